import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys
import Testing

extension HostTests {
    /// Real huge pages, real hugetlbfs mounts, the real prezerod. Serialized: every
    /// test reads the host's huge-page counters and must be alone in moving them.
    @Suite("pool: fills, claims, releases and take-backs on real huge pages", .tags(.hugePages))
    struct Pool: HostSuite {
        @Test("a fill on node 0 reads back all zeros and the node counters move by its pages")
        func fillReadsBackZero() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 64M\nfile_size: 32M")
            defer { pool.close() }
            let before = freePages(page2M)
            try pool.start()
            try pool.waitClean(64 * MiB)
            #expect(before - freePages(page2M) == 32, "64 MiB of 2 MiB pages is 32 pages")
            let clean = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean")
            #expect(clean.count == 2)
            for f in clean { #expect(try FileBytes.allZero("\(pool.mount)/.prezero/clean/\(f)")) }
            try pool.client.drain()
            try waitFor("the pool to give its pages back") { freePages(page2M) == before }
        }

        @Test("fill_workers files fill at once on a node, each its own file, within one fill_bandwidth shared by all")
        func parallelFills() throws {
            // 96 MiB at 48 MiB/s: 2 s if the budget is the node's, 0.5 s if each of 4 workers had its own.
            let pool = try TestPool(config: "min_free: 0\nfill_workers: 4\nfill_chunk: 2M\nfill_bandwidth: 48M",
                                    mountConfig: "target: 96M\nfile_size: 16M")
            defer { pool.close() }
            let before = freePages(page2M)
            let t0 = monotonicSeconds()
            try pool.start()
            var most = 0
            try waitFor("the pool to fill") {
                most = max(most, ((try? FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/filling")) ?? []).count)
                let n = try pool.node0()
                return n.cleanBytes == 96 * MiB && n.fillingBytes == 0
            }
            let secs = monotonicSeconds() - t0
            let n = try pool.node0()
            #expect(n.fillWorkers == 4)
            #expect(most >= 2, "several files filled at once (at most \(most) seen in filling/)")
            #expect(n.cleanFiles == 6, "six files of the configured 16 MiB, none cut short by another worker's plan: \(pool.snapshot())")
            #expect(before - freePages(page2M) == 48, "exactly the target's pages")
            #expect(secs >= 1.6, "the budget is the node's, shared by its workers: 96 MiB at 48 MiB/s took \(secs) s")
            for f in try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean") {
                #expect(try FileBytes.allZero("\(pool.mount)/.prezero/clean/\(f)"))
            }
        }

        @Test("no leak: a released file's pages go back to the kernel and the next tenant gets a new inode")
        func noLeak() throws {
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0",
                                    mountConfig: "target: 32M\nfile_size: 32M", mountOptions: "size=32M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(32 * MiB)
            let first = try pool.claim(32 * MiB, as: "vm-a", lease: "vm-a")
            #expect(first.outcome == .hit)
            let inode = Files.status(followingPath: first.path)!.inode
            try FileBytes.fill(first.path, byte: 0xA5)
            #expect(try pool.release(lease: "vm-a").reclaimed)
            #expect(!FileManager.default.fileExists(atPath: first.path), "release removes the destination name")
            try pool.expectRecycled(inode: inode, bytes: 32 * MiB)
            #expect(try pool.node0().recycledBytes == 32 * MiB)
            let second = try pool.claim(32 * MiB, as: "vm-b", lease: "vm-b")
            #expect(second.outcome == .hit)
            #expect(Files.status(followingPath: second.path)!.inode != inode, "a new inode, filled by the kernel")
            #expect(try FileBytes.allZero(second.path))
            _ = try pool.release(lease: "vm-b")
        }

        @Test("a claimed file maps with no new allocation")
        func handOverTakesNoPages() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 64M\nfile_size: 64M", mountOptions: "size=64M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(64 * MiB)
            let c = try pool.claim(64 * MiB, as: "vm")
            let before = hostFreePages(page2M)
            let (m, _) = try FileBytes.map(c.path)
            try m.populateWrite()
            #expect(hostFreePages(page2M) == before, "HugePages_Free must not move over mmap + MADV_POPULATE_WRITE")
            #expect(Zeroing.isZero(m.base, m.length))
        }

        @Test("claim outcomes: hit, truncated, partial, miss, and node sets")
        func claimOutcomes() throws {
            let pool = try TestPool(config: "min_free: 0\nlearned_shapes: 0\nrefill_delay_ms: 0", mountConfig: "target: 16M\nfile_size: 16M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(16 * MiB)
            let h = try pool.claim(16 * MiB, as: "h", nodes: [0])
            #expect(h.outcome == .hit && h.node == 0)
            try pool.waitClean(16 * MiB)
            let t = try pool.claim(8 * MiB, as: "t")
            #expect(t.outcome == .truncated)
            #expect(Files.status(followingPath: t.path)!.size == 8 * MiB)
            try pool.waitClean(16 * MiB)
            let p = try pool.claim(24 * MiB, as: "p")
            #expect(p.outcome == .partial, "a 16 MiB file extended to 24 MiB at claim time")
            #expect(Files.status(followingPath: p.path)!.size == 24 * MiB)
            #expect(try FileBytes.allZero(p.path))
            try pool.client.drain()
            try pool.waitClean(0)
            let miss = try pool.claim(4 * MiB, as: "m")
            #expect(miss.outcome == .miss && miss.path.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: pool.mount + "/m"))
            let o = try pool.node0().outcomes
            #expect(o[.hit] == 1 && o[.truncated] == 1 && o[.partial] == 1 && o[.miss] == 1)
        }

        @Test("fill, claim and no-leak on a 1 GiB-page mount")
        func gigantic() throws {
            let pool = try TestPool(pageSize: GiB, config: "min_free: 0\nrefill_delay_ms: 0", mountConfig: "target: 1G\nfile_size: 1G", mountOptions: "size=1G")
            defer { pool.close() }
            let before = freePages(GiB)
            try #require(before >= 1, "CI reserves two 1 GiB pages before any 2 MiB page")
            try pool.start()
            try pool.waitClean(GiB)
            #expect(before - freePages(GiB) == 1)
            let c = try pool.claim(GiB, as: "vm", lease: "big")
            #expect(c.outcome == .hit && c.pageSize == GiB)
            let free = hostFreePages(GiB)
            try FileBytes.fill(c.path, byte: 0x5A)
            #expect(hostFreePages(GiB) == free)
            _ = try pool.release(lease: "big")
            try pool.waitClean(GiB)
            let again = try pool.claim(GiB, as: "vm2", lease: "big2")
            #expect(try FileBytes.allZero(again.path))
            _ = try pool.release(lease: "big2")
        }

        @Test("the daemon yields to another hugepage user within a bounded wait")
        func yieldsToOthers() throws {
            let pool = try TestPool(config: "monitor_interval_ms: 100", mountConfig: "target: 100%\nmin_free: 8M\nfile_size: 32M")
            defer { pool.close() }
            try pool.start()
            try waitFor("the pool to hold everything but min_free") {
                let n = try pool.node0()
                return n.fillingBytes == 0 && freePages(page2M) == 4 && n.cleanBytes > 0
            }
            let free = freePages(page2M)
            // Grow 4 pages at a time, as a VMM or a database does, to well past what is free.
            let chunk = 4 * Int(page2M)
            let want = Int(free) * Int(page2M) + 32 * Int(page2M)
            var maps: [Mapping] = []
            var worst = 0.0
            while maps.count * chunk < want {
                let t0 = monotonicSeconds()
                var m: Mapping?
                while m == nil && monotonicSeconds() - t0 < 5 {
                    m = try? Mapping(anonymousHugeBytes: chunk, pageShift: 21)
                    if m == nil { sleepSeconds(0.02) }
                }
                let got = try #require(m, "a MAP_HUGETLB mapping still failed after 5 s")
                try got.populateWrite()
                worst = max(worst, monotonicSeconds() - t0)
                maps.append(got)
            }
            #expect(worst < 2, "each allocation waited at most \(worst) s")
            #expect(try pool.node0().yieldedBytes > 0)
        }
    }
}
