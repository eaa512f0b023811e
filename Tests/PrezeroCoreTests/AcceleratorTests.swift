@testable import PrezeroQemuModel
import Testing
@testable import PrezeroCore

/// Debian's libvirt-qemu: uid 64055, primary group kvm (108), also in group libvirt-qemu.
private let libvirtQemu = QemuIdentity(name: "libvirt-qemu", uid: 64055, groups: [108, 64055])
private let root = QemuIdentity(name: "root", uid: 0, groups: [0])

@Suite("AccelDecision")
struct AcceleratorTests {
    @Test("no /dev/kvm: tcg, and nothing to fix")
    func noDevice() {
        let d = AccelDecision.decide(device: nil, qemu: libvirtQemu)
        #expect(d.accel == .tcg && !d.reprobeTrap && d.fix == nil)
        #expect(d.domainType == "qemu")
    }

    @Test("udev's mode root:kvm 0660: kvm for a member of kvm")
    func udevMode() {
        let d = AccelDecision.decide(device: KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o660), qemu: libvirtQemu)
        #expect(d.accel == .kvm && !d.reprobeTrap)
        #expect(d.domainType == "kvm")
    }

    @Test("no udev, root:root 0600: tcg for libvirt-qemu, the re-probe trap, and udev's fix; root itself still gets kvm")
    func noUdev() {
        let dev = KVMDevice(ownerUID: 0, groupGID: 0, mode: 0o600)
        let d = AccelDecision.decide(device: dev, qemu: libvirtQemu)
        #expect(d.accel == .tcg && d.reprobeTrap)
        #expect(d.fix == "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm")
        #expect(d.reason.contains("mode 0600") && d.reason.contains("libvirt-qemu"))
        #expect(AccelDecision.decide(device: dev, qemu: root).accel == .kvm)
    }

    @Test("read-only for the group is not enough: QEMU opens /dev/kvm read-write")
    func readOnly() {
        #expect(AccelDecision.decide(device: KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o640), qemu: libvirtQemu).accel == .tcg)
        #expect(AccelDecision.decide(device: KVMDevice(ownerUID: 0, groupGID: 0, mode: 0o666), qemu: libvirtQemu).accel == .kvm)
        #expect(AccelDecision.decide(device: KVMDevice(ownerUID: 64055, groupGID: 0, mode: 0o600), qemu: libvirtQemu).accel == .kvm)
        // The owner's bits decide for the owner, even when others' would allow it.
        #expect(AccelDecision.decide(device: KVMDevice(ownerUID: 64055, groupGID: 0, mode: 0o066), qemu: libvirtQemu).accel == .tcg)
    }

    @Test("a node that does not open even for root (no module, a container): tcg, not the trap")
    func brokenDevice() {
        let d = AccelDecision.decide(device: KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o660, rootOpenError: "No such device or address"), qemu: libvirtQemu)
        #expect(d.accel == .tcg && !d.reprobeTrap && d.reason.contains("No such device"))
    }

    @Test("PREZERO_ACCEL=tcg forces tcg; another value is not taken for kvm")
    func override() {
        let dev = KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o660)
        #expect(AccelDecision.decide(device: dev, qemu: libvirtQemu, override: "tcg").accel == .tcg)
        #expect(AccelDecision.decide(device: dev, qemu: libvirtQemu, override: "kvm").accel == .kvm)
        #expect(AccelDecision.decide(device: dev, qemu: libvirtQemu, override: "").accel == .kvm)
        let bad = AccelDecision.decide(device: dev, qemu: libvirtQemu, override: "hvf")
        #expect(bad.accel == .tcg && bad.reason.contains("neither kvm nor tcg"))
        #expect(AccelDecision.decide(device: nil, qemu: libvirtQemu, override: "kvm").accel == .tcg, "no device, no kvm")
    }

    @Test("kvm_pvm: firmware-only guests get kvm, a guest that boots a kernel gets tcg")
    func pvm() {
        let dev = KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o660, backend: "kvm_pvm")
        #expect(AccelDecision.decide(device: dev, qemu: libvirtQemu).accel == .kvm)
        let boot = AccelDecision.decide(device: dev, qemu: libvirtQemu, bootsKernel: true)
        #expect(boot.accel == .tcg && boot.reason.contains("kvm_pvm") && !boot.reprobeTrap)
        let amd = KVMDevice(ownerUID: 0, groupGID: 108, mode: 0o660, backend: "kvm_amd")
        #expect(AccelDecision.decide(device: amd, qemu: libvirtQemu, bootsKernel: true).accel == .kvm)
    }
}
