import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroQemuModel
import PrezeroSys
import Testing

extension HostTests {
    /// Where prezerod agrees to run, and which mounts it takes when its config lists none.
    @Suite("prezerod's start: what it refuses and what it pools", .tags(.hugePages))
    struct DaemonStart: HostSuite {
        @Test("prezerod refuses to start outside the initial PID namespace, saying why")
        func refusesAnotherPIDNamespace() throws {
            let pool = try TestPool(mountConfig: "target: 0")
            defer { pool.close() }
            // With a /proc of its own (a container's), and with the host's /proc seen from inside.
            for unshare in [["/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount-proc"], ["/usr/bin/unshare", "--pid", "--fork", "--kill-child"]] {
                let r = try run(unshare + [Binaries.prezerod, "--config", pool.configPath], timeout: 30)
                #expect(r.status != 0, "\(unshare): \(r.err)")
                #expect(r.err.contains("not in the host's initial PID namespace") && r.err.contains("run prezerod on the host"), "\(r.err)")
                #expect(r.err.split(separator: "\n").count == 1, "one line: \(r.err)")
            }
            #expect(!FileManager.default.fileExists(atPath: pool.socket), "it never got as far as its socket")
            try pool.start()
        }

        @Test("with no mounts: configured prezerod pools only the mounts qemu.conf names, says so, and never another hugetlbfs mount")
        func mountsFromQemuConf() throws {
            let pool = try TestPool(config: "qemu_conf: {base}/qemu.conf\nmin_free: 0\ntarget: 0", listMount: false)
            defer { pool.close() }
            // Another program's hugetlbfs mount (kubelet's, say): never prezerod's.
            let other = pool.base + "/kubelet-hugepages"
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: false)
            #expect(try run(["/bin/mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", other]).status == 0)
            defer { _ = try? run(["/bin/umount", other]) }
            let conf = pool.base + "/qemu.conf"
            // Nothing named (libvirt itself would then take every mount): refused, naming mounts:.
            try "# hugetlbfs_mount = \"/dev/hugepages\"\nuser = \"root\"\n".write(toFile: conf, atomically: true, encoding: .utf8)
            let none = try run([Binaries.prezerod, "--config", pool.configPath], timeout: 30)
            #expect(none.status != 0 && none.err.contains("mounts: is not set") && none.err.contains("list the pool mounts under mounts:"), "\(none.err)")
            #expect(none.err.split(separator: "\n").count == 1, "one line: \(none.err)")
            // memory_backing_dir on the pool's mount: that mount, and only it.
            try "memory_backing_dir = \"\(pool.mount)/libvirt-ram\"\n".write(toFile: conf, atomically: true, encoding: .utf8)
            try pool.start()
            #expect(try pool.client.status().mounts.map(\.path) == [pool.mount])
            #expect(!FileManager.default.fileExists(atPath: other + "/.prezero"), "no pool directory on the other mount")
            #expect(pool.log().contains("pooling only the hugetlbfs mounts libvirt is configured to use in \(conf): \(pool.mount) (memory_backing_dir \(pool.mount)/libvirt-ram)"), "\(pool.log())")
            pool.stop()
            // hugetlbfs_mount names it: the same.
            try "hugetlbfs_mount = [\"\(pool.mount)\"]\n".write(toFile: conf, atomically: true, encoding: .utf8)
            try pool.start()
            #expect(try pool.client.status().mounts.map(\.path) == [pool.mount])
            #expect(pool.log().contains("\(pool.mount) (hugetlbfs_mount)"))
        }
    }
}
