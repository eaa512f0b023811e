import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys
import Testing

extension HostTests {
    /// 1 GiB pages end to end, on the two 1 GiB pages `make test` reserves first: the
    /// page size large-VM hosts use, where the kernel's own zeroing costs most.
    @Suite("1 GiB pages through libvirt and prezero launch", .tags(.hugePages, .qemu, .libvirt), .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct GigaPages: HostSuite {
        @Test("1 GiB pages through libvirt: memory_backing_dir on a 1 GiB pool mount, handed over with no new page, taken back and refilled")
        func gigaLibvirt() throws {
            let pool = try gigaPool()
            let lv = try LibvirtHost(pool: pool)
            defer { lv.close(); pool.close() }
            let uuid = try lv.define(name: "pz-e2e-1g", memoryMiB: 1024, backing: LibvirtHost.eligible)
            let before = hostFreePages(GiB)
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            #expect(hostFreePages(GiB) == before, "no new 1 GiB page across virsh start")
            let path = try gigaLease(pool, "\(uuid).pc.ram")
            let inode = Files.status(followingPath: path)?.inode
            #expect(lv.mappedInodes(try lv.qemuPID(uuid)) == Set([inode].compactMap { $0 }), "QEMU maps the leased 1 GiB file")
            #expect(pool.log().contains("pc.ram: handed over 1 GiB from node 0 (hit"))
            try FileBytes.fill(path, byte: 0x9E)
            #expect(try lv.virsh("destroy", uuid).status == 0)
            try expectGigaRecycled(pool, inode: inode ?? 0, freeBefore: before)
        }

        @Test("1 GiB pages through prezero launch: QEMU maps the pre-zeroed 1 GiB file, no new page, taken back and refilled after it exits")
        func gigaLaunch() throws {
            let pool = try gigaPool()
            defer { pool.close() }
            let before = hostFreePages(GiB)
            let (launcher, _) = try startQemuDirect(pool, size: "1G", pageSize: "1G")
            defer { stopLauncher(launcher) }
            #expect(hostFreePages(GiB) == before, "no new 1 GiB page across QEMU's start")
            let path = try gigaLease(pool, "launch.\(launcher.pid).m0")
            let inode = Files.status(followingPath: path)?.inode ?? 0
            let qemu = childPIDs(launcher.pid)
            let maps = (try? String(contentsOfFile: "/proc/\(qemu.first ?? 0)/maps", encoding: .utf8)) ?? ""
            #expect(maps.split(separator: "\n").contains { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first == "\(inode)" },
                    "QEMU maps the leased 1 GiB file")
            #expect(launchLog(pool).contains("m0: 1 GiB pre-zeroed on node 0 (hit)"), "\(launchLog(pool))")
            try FileBytes.fill(path, byte: 0x9E)
            launcher.signal(SIGTERM)
            #expect(try launcher.wait(timeout: 60) == 0, "\(launchLog(pool))")
            try expectGigaRecycled(pool, inode: inode, freeBefore: before)
        }
    }
}

extension HostSuite {
    /// A pool of one 1 GiB file on a 1 GiB-page mount capped at one page, with no refill under a test.
    func gigaPool() throws -> TestPool {
        try #require(hostFreePages(GiB) >= 1, "make test reserves two 1 GiB pages before any 2 MiB page")
        let pool = try TestPool(pageSize: GiB, config: "min_free: 0\nrefill_delay_ms: 0\nreclaim_interval_ms: 100",
                                mountConfig: "target: 1G\nfile_size: 1G", mountOptions: "size=1G")
        try pool.start()
        try pool.waitClean(GiB, timeout: 60)
        return pool
    }

    /// The one leased file: its path, after checking the name says 1 GiB on node 0.
    func gigaLease(_ pool: TestPool, _ key: String) throws -> String {
        let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased")
        #expect(leased == ["\(key)~n0-1073741824-1"], "\(pool.log().suffix(2000))")
        return "\(pool.mount)/.prezero/leased/\(leased.first ?? "")"
    }

    /// After the guest is gone: its file taken back, a new one in clean/, every byte zero, no page lost.
    func expectGigaRecycled(_ pool: TestPool, inode: UInt64, freeBefore: UInt64) throws {
        try pool.expectRecycled(inode: inode, bytes: GiB)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean").count == 1)
        #expect(hostFreePages(GiB) == freeBefore, "the pool holds its page again, and no other")
    }
}

