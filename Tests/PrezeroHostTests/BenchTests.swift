import Foundation
import PrezeroBench
import Testing

extension HostTests {
    @Suite("benches: the short forms of make bench and make bench-storm", .tags(.hugePages, .qemu), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct Bench: HostSuite {
        /// The short form of `make bench` and `make bench-storm`: the static binary runs, through
        /// the CLI as well, and its figures are whole. Not a timed test: no rate is asserted.
        @Test("prezero-bench is static, and its pool and storm benches (claims and QEMUs) run on real huge pages with every claim a hit")
        func benchShortForms() throws {
            let bin = Binaries.dir + "/prezero-bench"
            #expect(try !Self.hasInterpreter(bin), "prezero-bench names a dynamic loader: it would not run on a machine without Swift's libraries")

            let storm = try run([Binaries.prezero, "bench", "storm", "--vms", "8", "--size", "32M", "--runs", "1", "--json"], timeout: 300)
            #expect(storm.status == 0, "\(storm.err)")
            let s = try JSONDecoder().decode(StormBench.Result.self, from: Data(storm.out.utf8))
            #expect(s.claims == 8 && s.hits == 8, "a storm within the pool's target is all hits: \(s.hits) of \(s.claims)")
            #expect(s.claimS.max > 0 && s.backToTargetS.runs == 1)

            // --launch: QEMUs through prezero launch, every one on a handed-over file.
            let launch = try run([bin, "storm", "--vms", "2", "--size", "64M", "--runs", "1", "--launch", "--prezero", Binaries.prezero, "--json"], timeout: 300)
            #expect(launch.status == 0, "\(launch.err)")
            let l = try JSONDecoder().decode(StormBench.Result.self, from: Data(launch.out.utf8))
            #expect(l.hits == 2 && l.launch != nil && l.readyS.max > 0, "\(launch.out)")

            let pool = try run([bin, "pool", "--size", "128M", "--runs", "1", "--workers", "2", "--json"], timeout: 300)
            #expect(pool.status == 0, "\(pool.err)")
            let p = try JSONDecoder().decode(PoolBench.Result.self, from: Data(pool.out.utf8))
            #expect(p.workers == 2 && p.fillBytes == 128 << 20)
            #expect((p.fill?.workersBps.median ?? 0) > 0 && (p.fill?.fallocateFilesBps.median ?? 0) > 0 && (p.recycle?.releaseToCleanS.median ?? 0) > 0)
            // A pool file is populated without zeroing: faster than a fresh one at every size.
            #expect(!p.handover.isEmpty && p.handover.allSatisfy { $0.ratio.median > 1 && $0.freshThreadsS.median > 0 }, "\(p.handover)")
            let part = try run([bin, "pool", "--size", "64M", "--runs", "1", "--only", "budget", "--json"], timeout: 120)
            let b = try JSONDecoder().decode(PoolBench.Result.self, from: Data(part.out.utf8))
            #expect(part.status == 0 && b.budget != nil && b.fill == nil && b.recycle == nil && b.handover.isEmpty, "--only runs that part alone: \(part.out)")

            let bad = try run([bin, "storm", "--vms", "0"])
            #expect(bad.status == 2 && bad.err.hasPrefix("prezero-bench: --vms 0:") && bad.err.split(separator: "\n").count == 1, "\(bad.err)")
        }
    }
}

extension HostSuite {
    /// Whether the ELF file at `path` has a PT_INTERP program header (a dynamic loader).
    static func hasInterpreter(_ path: String) throws -> Bool {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        func u(_ off: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 | Int(d[off + $1]) << (8 * $1) } }
        guard d.count > 64, d.prefix(4) == Data([0x7f, 0x45, 0x4c, 0x46]) else { throw TestFailure("\(path) is not ELF") }
        let (phoff, phentsize, phnum) = (u(0x20, 8), u(0x36, 2), u(0x38, 2))
        return (0..<phnum).contains { u(phoff + $0 * phentsize, 4) == 3 }
    }
}
