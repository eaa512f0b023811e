import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    @Suite("crashes: kill -9 of prezerod, then a restart", .tags(.hugePages))
    struct Crash: HostSuite {
        @Test("kill -9 during a fill, then a restart: the fill resumes and no page is lost")
        func crashDuringFill() throws {
            let pool = try TestPool(config: "min_free: 0\nfill_chunk: 2M\nfill_bandwidth: 128M",
                                    mountConfig: "target: 256M\nfile_size: 256M")
            defer { pool.close() }
            let before = freePages(page2M)
            try pool.start()
            try waitFor("the fill to start") { try pool.node0().fillingBytes >= 16 * MiB }
            pool.crash()
            let filling = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/filling")
            #expect(filling.count == 1, "the cut-short fill is still in filling/")
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean").isEmpty)
            try pool.start()
            try pool.waitClean(256 * MiB)
            #expect(before - freePages(page2M) == 128, "exactly the target is held: nothing leaked, nothing lost")
            #expect(pool.log().contains("resumed_fills=1"))
            for f in try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean") {
                #expect(try FileBytes.allZero("\(pool.mount)/.prezero/clean/\(f)"))
            }
            try pool.client.drain()
            try waitFor("every page back") { freePages(page2M) == before }
        }

        /// The kernel tells a write lease's holder that someone opened the file with SIGIO,
        /// whose default action ends the process. A take-back holds one while it punches the
        /// file; an open meanwhile (its own release of that lease, racing the reclaimer, was
        /// seen in the chaos soak) killed prezerod (wait status 29).
        @Test("a lease break (SIGIO to the lease's holder) does not kill prezerod")
        func leaseBreakSignal() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 4M\nfile_size: 4M")
            defer { pool.close() }
            try pool.start()
            let p = try #require(pool.process)
            let ignored = (Files.readText("/proc/\(p.pid)/status") ?? "").split(separator: "\n").first { $0.hasPrefix("SigIgn:") }
                .flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
            #expect(ignored & (1 << (UInt64(SIGIO) - 1)) != 0, "prezerod ignores SIGIO")
            kill(p.pid, SIGIO)
            sleepSeconds(0.2)
            #expect(p.isRunning && (try? pool.client.status()) != nil, "prezerod is alive and answering after SIGIO: \(pool.log().suffix(300))")
        }

        @Test("kill -9 between a release and the take-back, then a restart: the file is taken back, never handed out")
        func crashAfterRelease() throws {
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0\nreclaim_interval_ms: 100",
                                    mountConfig: "target: 64M\nfile_size: 64M", mountOptions: "size=64M")
            defer { pool.close() }
            let before = freePages(page2M)
            try pool.start()
            try pool.waitClean(64 * MiB)
            let c = try pool.claim(64 * MiB, as: "vm", lease: "vm")
            let inode = Files.status(followingPath: c.path)!.inode
            do {
                let (map, fd) = try FileBytes.map(c.path)
                Zeroing.fill(map.base, map.length, byte: 0xEE)
                #expect(try !pool.release(lease: "vm").reclaimed, "mapped: stays leased")
                pool.crash()
                map.unmap()
                withExtendedLifetime(fd) {}
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").count == 1)
            try pool.start()
            // Its destination is gone: recovery adopts the lease, the reclaimer takes the file back.
            try pool.expectRecycled(inode: inode, bytes: 64 * MiB, timeout: 30)
            let again = try pool.claim(64 * MiB, as: "vm2", lease: "vm2")
            #expect(again.outcome == .hit)
            #expect(Files.status(followingPath: again.path)!.inode != inode)
            #expect(try FileBytes.allZero(again.path))
            #expect(before - freePages(page2M) == 32, "no page lost over the crash")
            _ = try pool.release(lease: "vm2")
        }
    }
}
