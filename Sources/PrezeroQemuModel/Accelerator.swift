import PrezeroCore
import PrezeroProtocol

/// Which accelerator a QEMU started here gets: KVM when `/dev/kvm` exists, works, and
/// opens read-write as the user QEMU runs as; TCG otherwise. Every demo, bench, test,
/// example and NUMA guest asks this one function, and prints its answer.
public enum Accelerator: String, Codable, Sendable {
    case kvm, tcg
}

/// What the host says about `/dev/kvm`, read by PrezeroSys.
public struct KVMDevice: Equatable, Sendable {
    public var ownerUID: UInt32
    public var groupGID: UInt32
    /// Permission bits (`0o660`).
    public var mode: UInt32
    /// The device opened read-write for root: nil when it did, else why not (a node
    /// without a loaded module, a container that forbids it).
    public var rootOpenError: String?
    /// The loaded KVM backend module: kvm_intel, kvm_amd, or kvm_pvm (a pagetable-based
    /// backend some cloud VMs offer instead of hardware nesting).
    public var backend: String?

    /// The device's owner, group and mode; by default it opened for root and no backend is known.
    public init(ownerUID: UInt32, groupGID: UInt32, mode: UInt32, rootOpenError: String? = nil, backend: String? = nil) {
        self.ownerUID = ownerUID
        self.groupGID = groupGID
        self.mode = mode
        self.rootOpenError = rootOpenError
        self.backend = backend
    }
}

/// The user QEMU runs as: its uid and every group it holds (primary and supplementary,
/// as libvirt sets them with initgroups before it execs QEMU).
public struct QemuIdentity: Equatable, Sendable {
    public var name: String
    public var uid: UInt32
    public var groups: [UInt32]

    /// A user by name, uid and every group it holds.
    public init(name: String, uid: UInt32, groups: [UInt32]) {
        self.name = name
        self.uid = uid
        self.groups = groups
    }
}

/// Which accelerator QEMU gets and why, with the fix when only the QEMU user's access is missing.
public struct AccelDecision: Codable, Equatable, Sendable {
    public var accel: Accelerator
    /// One line: why this accelerator.
    public var reason: String
    /// `/dev/kvm` works but the QEMU user cannot open it. libvirt then re-probes QEMU's
    /// capabilities at every start (`virQEMUCapsIsValid`: "KVM was enabled when probing
    /// …, but it is not available now"), about 4 s a start on our machines.
    public var reprobeTrap: Bool
    /// The command that gives the QEMU user access, when that is what is missing.
    public var fix: String?
    public var user: String

    /// A decision for `user`; `decide` makes them.
    public init(accel: Accelerator, reason: String, reprobeTrap: Bool, fix: String?, user: String) {
        self.accel = accel
        self.reason = reason
        self.reprobeTrap = reprobeTrap
        self.fix = fix
        self.user = user
    }

    /// libvirt's `<domain type=…>` for this accelerator.
    public var domainType: String { accel == .kvm ? "kvm" : "qemu" }

    enum CodingKeys: String, CodingKey {
        case accel, reason, user, fix
        case reprobeTrap = "reprobe_trap"
    }

    /// What Debian's udev rule (`KERNEL=="kvm", GROUP="kvm", MODE="0660"`) does.
    public static let udevFix = "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"

    /// - Parameters:
    ///   - device: `/dev/kvm` as found, nil when there is none.
    ///   - qemu: the user QEMU runs as (qemu.conf's `user` under libvirt; the caller for a QEMU started directly).
    ///   - override: `PREZERO_ACCEL`; `tcg` forces TCG so that a KVM host can run the TCG path too.
    ///   - bootsKernel: the guest boots a Linux kernel (the NUMA guests, `bench libvirt --boot`),
    ///     not only firmware. Under kvm_pvm a kernel not built for PVM runs about a thousand
    ///     times slower than native (measured here: the decompressor alone takes minutes),
    ///     so such a guest gets TCG; firmware-only guests still get KVM.
    public static func decide(device: KVMDevice?, qemu: QemuIdentity, override: String? = nil, bootsKernel: Bool = false) -> AccelDecision {
        func tcg(_ why: String, trap: Bool = false, fix: String? = nil) -> AccelDecision {
            AccelDecision(accel: .tcg, reason: why, reprobeTrap: trap, fix: fix, user: qemu.name)
        }
        if let o = override, !o.isEmpty {
            if o == "tcg" { return tcg("PREZERO_ACCEL=tcg") }
            if o != "kvm" { return tcg("PREZERO_ACCEL=\(o) is neither kvm nor tcg") }
        }
        guard let d = device else { return tcg("no /dev/kvm on this host") }
        if let e = d.rootOpenError { return tcg("/dev/kvm does not open: \(e)") }
        if bootsKernel, d.backend == "kvm_pvm" {
            return tcg("KVM here is kvm_pvm, where a guest kernel not built for PVM crawls; a booting guest runs under TCG")
        }
        guard opensReadWrite(d, qemu) else {
            let mode = String(d.mode & 0o7777, radix: 8)
            return tcg("/dev/kvm is uid \(d.ownerUID) gid \(d.groupGID) mode 0\(mode): \(qemu.name) cannot open it read-write",
                       trap: true, fix: udevFix)
        }
        return AccelDecision(accel: .kvm, reason: "/dev/kvm opens read-write as \(qemu.name)", reprobeTrap: false, fix: nil, user: qemu.name)
    }

    /// The kernel's permission check on a device node, owner, then group, then others
    /// (root passes; ACLs are not looked at: no Debian package sets one on /dev/kvm).
    static func opensReadWrite(_ d: KVMDevice, _ q: QemuIdentity) -> Bool {
        if q.uid == 0 { return true }
        let rw: UInt32
        if q.uid == d.ownerUID {
            rw = 0o600
        } else if q.groups.contains(d.groupGID) {
            rw = 0o060
        } else {
            rw = 0o006
        }
        return d.mode & rw == rw
    }
}
