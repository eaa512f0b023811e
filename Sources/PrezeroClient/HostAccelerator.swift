import PrezeroCore
import PrezeroQemuModel
import PrezeroSys

/// The accelerator QEMU gets on this host, decided by `AccelDecision.decide` from what
/// PrezeroSys reads. The CLI, the benches and the tests all ask here.
public enum HostAccelerator {
    /// The user libvirt runs QEMU as when qemu.conf names none (Debian's build default).
    public static let libvirtDefaultUser = "libvirt-qemu"

    /// For QEMU started by libvirt: as qemu.conf's `user`.
    public static func forLibvirt(qemuConf path: String = "/etc/libvirt/qemu.conf", bootsKernel: Bool = false) -> AccelDecision {
        let name = (try? QemuConf.parse(Files.readText(path) ?? ""))?.user ?? libvirtDefaultUser
        guard let u = KVMProbe.user(name) else {
            return AccelDecision(accel: .tcg, reason: "qemu.conf's user \(name) does not exist", reprobeTrap: false, fix: nil, user: name)
        }
        return decide(QemuIdentity(name: name, uid: u.uid, groups: u.groups), bootsKernel: bootsKernel)
    }

    /// For QEMU started by this process, as its own user.
    public static func forDirectQEMU(bootsKernel: Bool = false) -> AccelDecision {
        let u = KVMProbe.current()
        return decide(QemuIdentity(name: u.uid == 0 ? "root" : "uid \(u.uid)", uid: u.uid, groups: u.groups), bootsKernel: bootsKernel)
    }

    static func decide(_ who: QemuIdentity, bootsKernel: Bool) -> AccelDecision {
        let device = KVMProbe.device().map {
            KVMDevice(ownerUID: $0.status.uid, groupGID: $0.status.gid, mode: $0.status.mode & 0o7777, rootOpenError: $0.openError, backend: $0.backend)
        }
        return AccelDecision.decide(device: device, qemu: who, override: Environment.value("PREZERO_ACCEL"), bootsKernel: bootsKernel)
    }
}
