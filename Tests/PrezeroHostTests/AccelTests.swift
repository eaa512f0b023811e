import Foundation
import Glibc
import PrezeroCore
import PrezeroSys
import Testing

extension HostTests {
    /// The accelerator decision against the real /dev/kvm, in both of the modes hosts have.
    @Suite("accelerator: KVM or TCG against the real /dev/kvm", .tags(.kvm))
    struct Accel: HostSuite {
        @Test("prezero accel --libvirt: with /dev/kvm root:root 0600 (no udev) it names the re-probe trap and its fix; with udev's mode, kvm")
        func accelReprobeTrap() throws {
            guard let before = Files.status(followingPath: "/dev/kvm") else {
                let r = try run([Binaries.prezero, "accel", "--libvirt"])
                #expect(r.out.hasPrefix("accel: tcg\n") && r.out.contains("no /dev/kvm"), "\(r.out)")
                return
            }
            defer {
                chown("/dev/kvm", before.uid, before.gid)
                chmod("/dev/kvm", mode_t(before.mode & 0o7777))
            }
            try #require(chown("/dev/kvm", 0, 0) == 0 && chmod("/dev/kvm", 0o600) == 0)
            let trap = try run([Binaries.prezero, "accel", "--libvirt", "--json"], env: ["PATH": "/usr/bin:/bin", "PREZERO_ACCEL": ""])
            #expect(trap.status == 0)
            #expect(trap.out.contains("\"accel\" : \"tcg\"") && trap.out.contains("\"reprobe_trap\" : true")
                    && trap.out.contains("chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"), "\(trap.out)")
            guard let kvm = Users.gid("kvm"), KVMProbe.device()?.openError == nil else { return }
            try #require(chown("/dev/kvm", 0, kvm) == 0 && chmod("/dev/kvm", 0o660) == 0)
            let ok = try run([Binaries.prezero, "accel", "--libvirt"], env: ["PATH": "/usr/bin:/bin", "PREZERO_ACCEL": ""])
            #expect(ok.out.hasPrefix("accel: kvm\n"), "\(ok.out)")
        }
    }
}
