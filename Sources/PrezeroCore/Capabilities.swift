import Foundation

/// The capabilities prezerod needs as root, and why; examples/systemd/prezerod.service keeps exactly
/// these (`CapabilityBoundingSet=`, checked by a test). Nothing else it does needs one: sched_setaffinity
/// and set_mempolicy(MPOL_BIND) on its own threads, fallocate/mmap/madvise on hugetlbfs, SO_PEERCRED
/// and binding its socket under /run/prezero are all unprivileged, and the write lease of a take-back
/// is taken on a file already made root's, so its owner is prezerod's fsuid and CAP_LEASE is not needed.
/// No other process is looked at: who still has a file open is the kernel's to say.
public enum DaemonCapabilities {
    public struct Needed: Sendable, Equatable {
        public var bit: Int
        public var name: String
        public var why: String
    }

    public static let needed: [Needed] = [
        Needed(bit: 0, name: "CAP_CHOWN", why: "hand a file to the VM's uid:gid and take it back to root"),
        Needed(bit: 1, name: "CAP_DAC_OVERRIDE", why: "link files into libvirt's 0700 per-domain directories"),
        Needed(bit: 3, name: "CAP_FOWNER", why: "chmod a file the VM's user owns"),
    ]

    /// The effective set from /proc/self/status (`CapEff:` in hex); nil if absent.
    public static func effective(status: String) -> UInt64? {
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        return nil
    }

    /// What `effective` lacks of `needed`.
    public static func missing(effective: UInt64) -> [Needed] {
        needed.filter { effective & (1 << UInt64($0.bit)) == 0 }
    }
}
