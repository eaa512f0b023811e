import Foundation
import PrezeroLab
import PrezeroSys
import Testing

extension HostTests {
    /// `prezero lab run`, the environment the demo, the benches and `make test` run in: what the
    /// command sees, and a host left as it was found, whether the command or the setup failed.
    @Suite("lab: prezero lab run makes the private environment and undoes it", .tags(.hugePages, .libvirt),
           .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy))
    struct LabRun: HostSuite {
        /// The host's state a lab must leave as it found it.
        static func hostState() -> [String] {
            let mounts = (Files.readText("/proc/mounts") ?? "").split(separator: "\n").filter { $0.contains("hugetlbfs") }.map(String.init)
            return mounts + [Files.readText(LabLibvirt.qemuConf) ?? "", Files.readText(HugePageReservation.savedPath) ?? "no saved counts",
                             "hooks: \(Files.list(path: LabLibvirt.hooksDir).sorted())",
                             "2M pages: \(HugePageCounters.host(pageSize: page2M)?.total ?? 0)",
                             "libvirtd: \(LibvirtHost.pid("/run/libvirtd.pid") != nil)"]
        }

        @Test("the command sees a filled pool, libvirt pointed at it and the hook; its exit status is the lab's; all is undone after")
        func labRunUndoes() throws {
            let before = LabRun.hostState()
            let check = """
                set -e
                test -S "$PREZERO_LAB_SOCKET"
                "$PREZERO_LAB_BIN/prezero" status --socket "$PREZERO_LAB_SOCKET" --json | grep -q '"clean_bytes" : 67108864'
                grep -q "memory_backing_dir = \\"$PREZERO_LAB_MOUNT/libvirt-ram\\"" /etc/libvirt/qemu.conf
                ls /etc/libvirt/hooks/qemu.d | grep -q prezero-lab-
                virsh -c qemu:///system version > /dev/null
                exit 3
                """
            let r = try run([Binaries.prezero, "lab", "run", "--reserve", "2M:64", "--target", "64M", "--libvirt", "private", "--", "sh", "-c", check],
                            timeout: 180)
            #expect(r.status == 3, "the command's own status (3) when every check in it passed: \(r.err.suffix(2000))")
            #expect(r.err.contains("prezerod: on /tmp/prezero-lab-"))
            #expect(LabRun.hostState() == before, "mounts, qemu.conf, saved counts, hooks, huge pages and libvirtd as before")
        }

        @Test("a setup step that fails (no installed hook) is one line, exit 1, and leaves nothing: no mount, qemu.conf as it was")
        func labRunFailedSetup() throws {
            try #require(Files.status(followingPath: LabLibvirt.hooksDir + "/prezero") == nil, "no prezero package on the test host")
            let before = LabRun.hostState()
            let r = try run([Binaries.prezero, "lab", "run", "--reserve", "2M:64", "--target", "64M", "--libvirt", "installed", "--", "true"],
                            timeout: 180)
            #expect(r.status == 1)
            #expect(r.err.contains("prezero: no installed hook at /etc/libvirt/hooks/qemu.d/prezero; install the package first"), "\(r.err)")
            #expect(LabRun.hostState() == before)
        }
    }
}
