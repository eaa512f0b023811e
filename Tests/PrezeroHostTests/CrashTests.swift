import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

extension PoolTests {
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

    @Test("kill -9 during a scrub, then a restart: the file is scrubbed again before anyone gets it")
    func crashDuringScrub() throws {
        let pool = try TestPool(config: "min_free: 0\nscrub:\n  bandwidth: 64M\n  chunk: 2M\n  verify: full",
                                mountConfig: "target: 128M\nfile_size: 128M", mountOptions: "size=128M")
        defer { pool.close() }
        let before = freePages(page2M)
        try pool.start()
        try pool.waitClean(128 * MiB)
        try pool.dirtyAndStartScrub(128 * MiB, byte: 0xEE)
        sleepSeconds(0.3)
        pool.crash()
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/scrubbing").count == 1)
        try pool.start()
        // The only file is dirty again: nothing may be handed out until its scrub is done.
        let early = try pool.claim(128 * MiB, as: "early")
        if early.outcome != .miss {
            #expect(try FileBytes.allZero(early.path), "a file handed out right after the restart must be zero")
            _ = try pool.client.release(ReleaseRequest(lease: early.lease))
        }
        try pool.waitClean(128 * MiB, timeout: 30)
        let again = try pool.claim(128 * MiB, as: "vm2", lease: "vm2")
        #expect(again.outcome == .hit)
        #expect(try FileBytes.allZero(again.path))
        #expect(before - freePages(page2M) == 64, "no page lost over the crash")
        _ = try pool.release(lease: "vm2")
    }
}
