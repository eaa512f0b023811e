import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroQemuModel
import PrezeroSys
import Testing

extension HostTests {
    /// A live migration into a destination QEMU that `prezero launch` started with `-incoming`
    /// on a pre-zeroed file: the destination is ready at once, and its memory ends up the source's.
    @Suite("migration between two QEMUs, both on pool files", .tags(.hugePages, .qemu), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct Migration: HostSuite {
        @Test("a live migration lands in a destination started by prezero launch -incoming on a pre-zeroed file: its memory is the source's")
        func migrationIntoPrezeroLaunch() throws {
            // One clean 128 MiB file for the destination, and room on the mount for the source's own.
            let pool = try launchPool(mountSize: "288M")
            defer { pool.close() }
            let source = pool.mount + "/migration-source"
            let (srcQMP, dstQMP, channel) = (pool.base + "/src.qmp", pool.base + "/dst.qmp", pool.base + "/migrate.sock")
            // The source, paused before its first instruction (-S), so that its memory is exactly what is written here.
            let src = try Child(Self.migrationQEMU(memPath: source, qmp: srcQMP, extra: ["-S"]), stderr: pool.base + "/src.err")
            defer { src.signal(SIGKILL); _ = try? src.wait(timeout: 30) }
            try #require(QMP.waitReady(socket: srcQMP, timeout: 60) { src.isRunning }, "source QEMU: \((try? String(contentsOfFile: pool.base + "/src.err", encoding: .utf8)) ?? "")")
            // A pattern over the first half of guest RAM, one byte per page varying; the second half stays zero.
            let (m, _) = try FileBytes.map(source)
            let half = m.length / 2
            for page in stride(from: 0, to: half, by: Int(page2M)) {
                Zeroing.fill(m.base + page, Int(page2M), byte: UInt8(truncatingIfNeeded: 0x40 + page / Int(page2M)))
            }

            let claims = pool.base + "/claims.json"
            let dst = try Child([Binaries.prezero, "launch", "--socket", pool.socket, "--memory", "m0=128M", "--json-claims", claims, "--"]
                                + Self.migrationQEMU(memPath: "{prezero:m0}", qmp: dstQMP, extra: ["-incoming", "unix:\(channel)"]),
                                stderr: pool.base + "/dst.err")
            defer { dst.signal(SIGTERM); _ = try? dst.wait(timeout: 30) }
            try #require(QMP.waitReady(socket: dstQMP, timeout: 60) { dst.isRunning }, "destination: \((try? String(contentsOfFile: pool.base + "/dst.err", encoding: .utf8)) ?? "")")
            #expect(try QMP.queryStatus(socket: dstQMP) == "inmigrate")
            let err = (try? String(contentsOfFile: pool.base + "/dst.err", encoding: .utf8)) ?? ""
            #expect(err.contains("m0: 128 MiB pre-zeroed on node 0 (hit)"), "\(err)")
            let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased")
            try #require(leased.count == 1)
            let leasedPath = "\(pool.mount)/.prezero/leased/\(leased[0])"

            _ = try QMP.execute(socket: srcQMP, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:\(channel)\"}}", as: QMP.Empty.self)
            try Self.waitMigrated(srcQMP)
            try waitFor("the destination to leave inmigrate", timeout: 60) { (try? QMP.queryStatus(socket: dstQMP)) != "inmigrate" }
            // The destination's memory, read through its leased file, is the source's byte for byte.
            let (d, _) = try FileBytes.map(leasedPath)
            try #require(d.length == m.length)
            #expect(memcmp(d.base, m.base, m.length) == 0, "destination RAM equals source RAM")
            #expect(Zeroing.isZero(d.base + half, m.length - half), "the zero half stayed zero")
            #expect(!Zeroing.isZero(d.base, half), "the pattern arrived")
            // This test's own mapping would hold the file as surely as QEMU's.
            d.unmap()

            // After the destination exits, its file is released and scrubbed back to clean.
            dst.signal(SIGTERM)
            _ = try dst.wait(timeout: 30)
            try pool.waitClean(128 * MiB, timeout: 30)
            let clean = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean")
            #expect(try clean.allSatisfy { try FileBytes.allZero("\(pool.mount)/.prezero/clean/\($0)") })
            src.signal(SIGKILL)
            _ = try? src.wait(timeout: 30)
            try? FileManager.default.removeItem(atPath: source)
        }
    }
}

extension HostSuite {
    /// QEMU's arguments for a 128 MiB guest on `memPath`, answering QMP on `qmp`.
    static func migrationQEMU(memPath: String, qmp: String, extra: [String]) -> [String] {
        let accel = HostAccelerator.forDirectQEMU()
        return ["qemu-system-x86_64", "-accel", accel.accel.rawValue, "-nodefaults", "-nographic", "-display", "none", "-m", "128M",
                "-object", "memory-backend-file,id=m0,mem-path=\(memPath),size=\(128 * MiB),share=on,prealloc=on",
                "-machine", "pc,memory-backend=m0", "-qmp", "unix:\(qmp),server=on,wait=off"] + extra
    }

    /// Waits until `query-migrate` on `qmp` reports `completed`; throws on `failed`.
    static func waitMigrated(_ qmp: String, timeout: Double = 120) throws {
        var last = ""
        try waitFor("the migration to complete (last: \(last))", timeout: timeout) {
            last = (try? QMP.migrationStatus(socket: qmp)) ?? ""
            if last == "failed" { throw TestFailure("migration failed") }
            return last == "completed"
        }
    }
}
