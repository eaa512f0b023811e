import PrezeroClient
import PrezeroQemuModel
import PrezeroSys

/// `/dev/kvm` as Debian's udev rule leaves it (group kvm, mode 0660), for a run on a host
/// without udev, where it is root:root 0600: libvirt's QEMU user cannot open it, libvirt
/// re-probes QEMU at every start (~4 s) and guests run under TCG. Only then is anything
/// changed; the group and mode found are saved and `restore` writes them back.
public enum KvmAccess {
    public static let device = "/dev/kvm"
    public static let savedPath = "/run/prezero-kvm.saved"

    /// Gives the device udev's group and mode where `prezero accel --libvirt` finds the
    /// re-probe trap; returns the line to print when it did, and the decision after.
    public static func grant(qemuConf: String) throws -> (changed: String?, decision: AccelDecision) {
        guard let st = Files.status(followingPath: device), HostAccelerator.forLibvirt(qemuConf: qemuConf).reprobeTrap else {
            return (nil, HostAccelerator.forLibvirt(qemuConf: qemuConf))
        }
        guard let kvm = Users.gid("kvm") else { throw LabError("kvm: no group kvm on this host; install qemu-system-x86 (make deps)") }
        guard try SavedSetting(path: savedPath).claim(found: ["\(st.gid)", String(st.mode & 0o7777, radix: 8)]) else {
            return (nil, HostAccelerator.forLibvirt(qemuConf: qemuConf))   // an outer lab granted it, and restores it
        }
        try Files.setGroupAndMode(path: device, gid: kvm, mode: 0o660)
        let line = "kvm: \(device) set to group kvm, mode 0660 for this run (was \(st.gid) \(String(st.mode & 0o7777, radix: 8))); restored at exit"
        return (line, HostAccelerator.forLibvirt(qemuConf: qemuConf))
    }

    /// Writes back the group and mode `grant` saved; nothing when it changed nothing, or while
    /// a live lab other than this process owns them.
    public static func restore() throws -> String? {
        guard let saved = SavedSetting(path: savedPath).read(), !saved.ownedElsewhere else { return nil }
        let f = saved.values
        guard f.count == 2, let gid = UInt32(f[0]), let mode = UInt32(f[1], radix: 8) else {
            throw LabError("kvm: \(savedPath) is not `GID MODE`; set \(device)'s group and mode by hand and remove it")
        }
        try Files.setGroupAndMode(path: device, gid: gid, mode: mode)
        try Files.removePath(savedPath)
        return "kvm: \(device) restored to group \(gid), mode \(String(mode, radix: 8))"
    }
}
