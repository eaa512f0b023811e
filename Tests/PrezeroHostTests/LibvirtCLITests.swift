import Foundation
import Glibc
import PrezeroCore
import PrezeroLibvirtModel
import PrezeroSys
import Testing

extension HostTests {
    /// `<numatune>` end to end, and `prezero libvirt enable|doctor` against a real libvirtd.
    @Suite("prezero libvirt: enable, doctor and numatune against a real libvirtd", .tags(.hugePages, .qemu, .libvirt), .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct LibvirtCLI: HostSuite {
        @Test("a guest cell bound by <numatune> is handed a file from its host node and QEMU binds it there")
        func libvirtNumatune() throws {
            let (pool, lv) = try libvirtPool()
            defer { lv.close(); pool.close() }
            let numatune = "<numatune><memory mode='strict' nodeset='0'/><memnode cellid='0' mode='strict' nodeset='0'/></numatune>"
            let cells = "<numa><cell id='0' cpus='0' memory='131072' unit='KiB' memAccess='shared'/></numa>"
            let uuid = try lv.define(name: "pz-e2e-numatune", memoryMiB: 128, backing: "<source type='file'/><allocation mode='immediate'/>",
                                     cells: cells, numatune: numatune)
            let before = hostFreePages(page2M)
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            #expect(hostFreePages(page2M) == before)
            let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased")
            #expect(leased == ["\(uuid).ram-node0~n0-134217728-1"], "the file comes from host node 0")
            let qemu = try lv.qemuPID(uuid)
            let inode = Files.status(followingPath: "\(pool.mount)/.prezero/leased/\(leased.first ?? "")")?.inode
            #expect(lv.mappedInodes(qemu) == Set([inode].compactMap { $0 }))
            // QEMU bound the backend to node 0 (policy=bind), and every page of it is there.
            let numaMaps = (try? String(contentsOfFile: "/proc/\(qemu)/numa_maps", encoding: .utf8)) ?? ""
            let line = numaMaps.split(separator: "\n").first { $0.contains(lv.backingDir) }.map(String.init) ?? ""
            #expect(line.contains("bind:0"), "numa_maps: \(line)")
            #expect(line.contains("N0=64"), "numa_maps: \(line)")
            _ = try lv.virsh("destroy", uuid)
            try pool.waitClean(128 * MiB, timeout: 30)
        }

        @Test("libvirt doctor finds a stock domain ineligible; enable --dry-run changes nothing; enable makes it start on a pool file")
        func libvirtEnableAndDoctor() throws {
            let pool = try launchPool()
            // The hook doctor looks for, installed before libvirtd starts.
            let hooks = pool.base + "/hooks"
            try FileManager.default.createDirectory(atPath: hooks, withIntermediateDirectories: true)
            try "#!/bin/sh\nexit 0\n".write(toFile: hooks + "/prezero", atomically: true, encoding: .utf8)
            chmod(hooks + "/prezero", 0o755)
            let lv = try LibvirtHost(pool: pool)
            defer { lv.close(); pool.close() }
            let uuid = try lv.define(name: "pz-e2e-enable", memoryMiB: 128, backing: "<hugepages/><nosharepages/>")
            let cli = [Binaries.prezero, "libvirt"]
            let opts = ["--socket", pool.socket, "--hooks-dir", hooks]

            let sick = try run(cli + ["doctor", "pz-e2e-enable"] + opts)
            #expect(sick.status == 4)
            #expect(sick.out.contains("ok   memory_backing_dir: \(lv.backingDir) on pool mount \(pool.mount)"), "\(sick.out)")
            #expect(sick.out.contains("ok   hook:") && sick.out.contains("ok   libvirtd:"), "\(sick.out)")
            #expect(sick.out.contains("FAIL domain pz-e2e-enable: pc.ram: make-room, <hugepages>: QEMU gets the directory"), "\(sick.out)")
            #expect(sick.out.contains("prezero libvirt enable pz-e2e-enable"), "the failure names the fix")

            let defined = try lv.virsh("dumpxml", "--inactive", "--security-info", uuid).out
            let dry = try run(cli + ["enable", "pz-e2e-enable", "--dry-run"])
            #expect(dry.status == 0, "\(dry.err)")
            #expect(dry.out.contains("-    <hugepages/>\n") && dry.out.contains("+    <source type='file'/>\n+    <access mode='shared'/>\n"), "\(dry.out)")
            #expect(try lv.virsh("dumpxml", "--inactive", "--security-info", uuid).out == defined, "--dry-run changes nothing")

            let done = try run(cli + ["enable", uuid, "--json"])
            #expect(done.status == 0, "\(done.err)")
            #expect(done.out.contains("\"applied\" : true"))
            let enabled = try lv.virsh("dumpxml", "--inactive", "--security-info", uuid).out
            let changed = LineDiff.unified(defined, enabled).split(separator: "\n").filter { $0.hasPrefix("+") || $0.hasPrefix("-") }
            #expect(changed.sorted() == ["+    <access mode='shared'/>", "+    <source type='file'/>", "+++ b", "-    <hugepages/>", "--- a"].sorted(),
                    "only <memoryBacking> changed: \(changed)")
            let again = try run(cli + ["enable", "pz-e2e-enable"])
            #expect(again.status == 0 && again.out.contains("already in the eligible form"))

            let healthy = try run(cli + ["doctor", "pz-e2e-enable", "--json"] + opts)
            #expect(healthy.status == 0, "\(healthy.out)")
            #expect(healthy.out.contains("eligible: pc.ram 128 MiB in 2 MiB pages"), "\(healthy.out)")
            // And libvirt really starts it on a pool file.
            let started = try lv.virsh("start", uuid)
            #expect(started.status == 0, "\(started.err)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").count == 1)
            _ = try lv.virsh("destroy", uuid)

            // A hook installed after libvirtd started is not run by it: doctor says to restart.
            try "#!/bin/sh\nexit 0\n".write(toFile: hooks + "/prezero", atomically: true, encoding: .utf8)
            chmod(hooks + "/prezero", 0o755)
            let stale = try run(cli + ["doctor"] + opts)
            #expect(stale.status == 4)
            #expect(stale.out.contains("FAIL libvirtd: started before the hook was installed"), "\(stale.out)")

            let missing = try run(cli + ["enable", "pz-e2e-no-such-domain"])
            #expect(missing.status == 1)
            #expect(missing.err.hasPrefix("prezero: no domain 'pz-e2e-no-such-domain'") && missing.err.split(separator: "\n").count == 1, "\(missing.err)")
            try pool.waitClean(128 * MiB, timeout: 30)
        }
    }
}
