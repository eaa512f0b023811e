/// The capabilities prezerod needs as root, and why; examples/systemd/prezerod.service keeps exactly
/// these (`CapabilityBoundingSet=`, checked by a test). Nothing else it does needs one: sched_setaffinity
/// and set_mempolicy(MPOL_BIND) on its own threads, fallocate/mmap/madvise on hugetlbfs, SO_PEERCRED
/// and binding its socket under /run/prezero are all unprivileged, and the write lease of a take-back
/// is taken on a file already made root's, so its owner is prezerod's fsuid and CAP_LEASE is not needed.
/// No other process is looked at: who still has a file open is the kernel's to say.
public enum DaemonCapabilities {
    /// One capability: its bit in the effective set, its name, and what prezerod does with it.
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

    /// Only with allowed_uids or allowed_gids: a non-root caller's link and unlink are made
    /// with its file-system identity, so that the kernel checks its own rights.
    public static let forOtherCallers: [Needed] = [
        Needed(bit: 6, name: "CAP_SETGID", why: "take on a non-root caller's groups (setgroups, setfsgid) to link its file as it"),
        Needed(bit: 7, name: "CAP_SETUID", why: "take on a non-root caller's uid (setfsuid) to link its file as it"),
    ]

    /// What prezerod needs: `needed`, and `forOtherCallers` too when non-root callers are admitted.
    public static func needed(otherCallers: Bool) -> [Needed] { needed + (otherCallers ? forOtherCallers : []) }

    /// The effective set from /proc/self/status (`CapEff:` in hex); nil if absent.
    public static func effective(status: String) -> UInt64? {
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(Text.trimmed(line.dropFirst("CapEff:".count)), radix: 16)
        }
        return nil
    }

    /// What `effective` lacks of what prezerod needs, with or without non-root callers.
    public static func missing(effective: UInt64, otherCallers: Bool = false) -> [Needed] {
        needed(otherCallers: otherCallers).filter { effective & (1 << UInt64($0.bit)) == 0 }
    }
}
