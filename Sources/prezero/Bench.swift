import ArgumentParser
import Foundation
import Glibc
import Logging
import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroSys

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each against its baseline measured in the same run.",
        subcommands: [BenchPool.self, BenchLibvirt.self, BenchLaunch.self])
}

/// Median and range of repeated measurements.
struct Spread: Codable {
    var median: Double
    var min: Double
    var max: Double
    var runs: Int

    init(_ xs: [Double]) {
        let s = xs.sorted()
        runs = s.count
        min = s.first ?? 0
        max = s.last ?? 0
        median = s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A distribution-free ~95% confidence interval for the median: the order statistics
    /// n/2 ∓ 0.98·√n (ranks from 1), clamped to the sample.
    static func medianInterval(_ xs: [Double]) -> (low: Double, high: Double) {
        let s = xs.sorted()
        guard !s.isEmpty else { return (0, 0) }
        let n = Double(s.count), half = 0.98 * n.squareRoot()
        let lo = Swift.max(1, Int((n / 2 - half).rounded(.down))), hi = Swift.min(s.count, Int((n / 2 + half).rounded(.up)) + 1)
        return (s[lo - 1], s[hi - 1])
    }

    func text(_ digits: Int = 3) -> String {
        let f = "%.\(digits)f"
        return "\(String(format: f, median)) [\(String(format: f, min))–\(String(format: f, max))]"
    }
}

struct BenchPool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Hand-over, recycle, fill and fill budget of a private pool, each against its baseline in the same run.",
        discussion: """
            Runs an in-process pool on a temporary hugetlbfs mount of 2 MiB pages (root needed) and reports
            the median and range over --runs repetitions:
              hand-over:   mmap + MADV_POPULATE_WRITE of a fresh file / of a pool file (target ≥ 100×)
              recycle:     a raw fallocate of a new file / prezero's release to a new file in clean/, the
                           released file's pages taken back and a new one filled (target ≥ 0.8×)
              fill:        prezero's fill rate / one raw fallocate of the same size (target ≥ 0.95×)
              fill budget: |fill rate under fill_bandwidth − the budget| / the budget (target ≤ 0.10)
            The size is capped by the free huge pages; the one used is printed. The recycle uses half of it,
            so that the pool holds two files.
            """)

    @Option(name: .long, help: "Size of each file (default 8G, capped by the free 2 MiB pages).")
    var size = Size(bytes: 8 << 30)
    @Option(name: .long, help: "Repetitions of each measurement (at least 5).")
    var runs: Int = 5
    @Option(name: .long, help: "Fill budget (fill_bandwidth) for the budget measurement, bytes per second.")
    var budget = Size(bytes: 1 << 30)
    @Flag(name: .long, help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard runs >= 5 else { throw ValidationError("--runs must be at least 5 for a median and a range") }
    }

    struct Result: Codable {
        var pageSize: UInt64
        var bytes: UInt64
        var recycleBytes: UInt64
        var budgetBytes: UInt64
        var budgetBps: Double
        var handoverRatio: Spread
        var handoverFreshS: Spread
        var handoverPoolS: Spread
        var recycleS: Spread
        var recycleFallocateS: Spread
        var recycleVsFallocate: Spread
        var fillVsFallocate: Spread
        var budgetError: Spread

        enum CodingKeys: String, CodingKey {
            case bytes
            case pageSize = "page_size", recycleBytes = "recycle_bytes", budgetBytes = "budget_bytes", budgetBps = "budget_bps"
            case handoverRatio = "handover_ratio", handoverFreshS = "handover_fresh_s", handoverPoolS = "handover_pool_s"
            case recycleS = "recycle_s", recycleFallocateS = "recycle_fallocate_s", recycleVsFallocate = "recycle_vs_fallocate"
            case fillVsFallocate = "fill_vs_fallocate", budgetError = "budget_error"
        }
    }

    func run() throws {
        let want = size.bytes
        let rate = Double(budget.bytes)
        guard Processes.userID() == 0 else { throw CLIError("bench pool needs root: it mounts hugetlbfs and binds memory", code: 1) }
        let ps: UInt64 = 2 << 20
        let free = (HugePageCounters.host(pageSize: ps)?.free ?? 0) * ps
        let bytes = min(want, free) / ps * ps
        guard bytes >= 64 << 20 else {
            throw CLIError("bench pool needs at least 64 MiB of free 2 MiB pages (\(ByteSize.format(free)) free); reserve some: scripts/hugepages.sh reserve 0 4096")
        }
        let half = bytes / 2 / ps * ps
        let lab = try BenchLab(pageSize: ps)
        defer { lab.close() }
        note("bench pool: \(ByteSize.format(bytes)) of \(ByteSize.format(ps)) pages, \(runs) runs; warming the pages once")
        try lab.warm(bytes)

        // Hand-over and fill: no refill while a file is out (refill_delay_ms of a minute).
        var ratio: [Double] = [], fresh: [Double] = [], pooled: [Double] = [], fill: [Double] = [], halfFallocate: [Double] = []
        var d = try lab.daemon(bandwidth: 0, fileSize: bytes, refillDelayMs: 60_000)
        for r in 1...runs {
            let fallocateS = try lab.timeFreshFile(bytes, populate: false)
            halfFallocate.append(try lab.timeFreshFile(half, populate: false))
            let freshS = try lab.timeFreshFile(bytes, populate: true)
            let fillRate = try lab.fill(d, bytes)
            let c = try lab.claim(d, bytes)
            let (map, poolS) = try lab.mapAndPopulate(c.path)
            map.unmap()
            _ = try lab.send(d, .release(ReleaseRequest(lease: c.lease)))
            fresh.append(freshS)
            pooled.append(poolS)
            ratio.append(freshS / poolS)
            fill.append(fillRate / (Double(bytes) / fallocateS))
            try lab.drain(d)
            note("  run \(r): hand-over \(String(format: "%.4f", freshS)) s → \(String(format: "%.5f", poolS)) s, fill/fallocate \(String(format: "%.3f", fill.last!))")
        }
        d.stop()

        // Recycle: a pool of two files of half the size, every page in them, refill_delay_ms 0.
        // A claimed file is written over by its tenant and released; the time runs from the
        // release to a new file in clean/: the old one's pages punched back, a new one filled.
        d = try lab.daemon(bandwidth: 0, fileSize: half, refillDelayMs: 0)
        var recycle: [Double] = []
        _ = try lab.fill(d, 2 * half)
        for r in 1...runs {
            let c = try lab.claim(d, half)
            let (map, _) = try lab.mapAndPopulate(c.path)
            Zeroing.fill(map.base, map.length, byte: 0xA5)
            map.unmap()
            let taken = lab.node(d).recycledFiles
            let t = monotonicSeconds()
            _ = try lab.send(d, .release(ReleaseRequest(lease: c.lease)))
            try lab.wait("the recycle", timeout: 120) {
                let n = lab.node(d)
                return n.recycledFiles > taken && n.cleanBytes == 2 * half && n.fillingBytes == 0
            }
            recycle.append(monotonicSeconds() - t)
            note("  recycle run \(r): release to a new clean file \(String(format: "%.4f", recycle.last!)) s, a raw fallocate \(String(format: "%.4f", halfFallocate[r - 1])) s")
        }
        try lab.drain(d)
        d.stop()

        // Fill budget: a fill long enough (2 s at the budget) that the bucket's burst is noise.
        let tBytes = min(bytes, UInt64(rate * 2) / ps * ps)
        d = try lab.daemon(bandwidth: UInt64(rate), fileSize: tBytes, refillDelayMs: 60_000)
        var errors: [Double] = []
        for r in 1...runs {
            let got = try lab.fill(d, tBytes)
            errors.append(abs(got - rate) / rate)
            try lab.drain(d)
            note("  budget run \(r): filled at \(ByteSize.format(UInt64(got)))/s against a budget of \(ByteSize.format(UInt64(rate)))/s")
        }
        d.stop()

        let res = Result(pageSize: ps, bytes: bytes, recycleBytes: half, budgetBytes: tBytes, budgetBps: rate,
                         handoverRatio: Spread(ratio), handoverFreshS: Spread(fresh), handoverPoolS: Spread(pooled),
                         recycleS: Spread(recycle), recycleFallocateS: Spread(halfFallocate),
                         recycleVsFallocate: Spread(zip(halfFallocate, recycle).map { $0 / $1 }),
                         fillVsFallocate: Spread(fill), budgetError: Spread(errors))
        if json {
            printJSON(res)
        } else {
            print("""
                prezero bench pool: \(ByteSize.format(bytes)) of \(ByteSize.format(ps)) pages, \(runs) runs, median [min–max]
                hand-over    fresh \(res.handoverFreshS.text(4)) s  pool \(res.handoverPoolS.text(5)) s  ratio \(res.handoverRatio.text(1))×  (target ≥ 100×)
                recycle      \(ByteSize.format(half)): fallocate \(res.recycleFallocateS.text(4)) s  release to clean \(res.recycleS.text(4)) s  ratio \(res.recycleVsFallocate.text())×  (target ≥ 0.8×)
                fill         prezero / fallocate  \(res.fillVsFallocate.text())×  (target ≥ 0.95×)
                fill budget  \(ByteSize.format(UInt64(rate)))/s over \(ByteSize.format(tBytes))  error \(res.budgetError.text())  (target ≤ 0.10)
                """)
        }
    }
}

extension BenchPool: BenchOutput {}

/// Progress on stderr (none with --json) and figures, for every benchmark.
protocol BenchOutput {
    var json: Bool { get }
}

extension BenchOutput {
    func note(_ s: String) {
        if !json { Streams.writeError(s + "\n") }
    }

    func f(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

    /// Keeps one round's timings (key, seconds) after the untimed round 0 and shows them;
    /// keys are `<prefix>_<name>_s`, shown as `<name>`.
    func record(_ row: [(key: String, seconds: Double)], round: Int, into t: inout [String: [Double]], prefix: String, label: String = "run") {
        guard round > 0 else { return }
        for (k, v) in row { t[k, default: []].append(v) }
        note("  \(label) \(round): " + row.map { "\($0.key.dropFirst(prefix.count + 1).dropLast(2)) \(f($0.seconds))" }.joined(separator: ", ") + " s")
    }

    /// One figure of the printed table: its label, padded to `width` (never cut), and its spread.
    func figureRow(_ label: String, _ spread: Spread?, width: Int) -> String {
        "  \(label)\(String(repeating: " ", count: max(1, width + 1 - label.count)))\(spread?.text() ?? "-") s"
    }
}

/// --size, --small, --runs and --json, shared by the start benchmarks.
struct StartBenchOptions: ParsableArguments {
    @Option(name: .long, help: "Guest size (default 8G).")
    var size = Size(bytes: 8 << 30)
    static let defaultSmall = Size(bytes: 256 << 20)
    @Option(name: .long, help: "Guest size for the start without memory (default 256M; one page on a mount of larger pages).")
    var small = defaultSmall
    @Option(name: .long, help: "Timed rounds (at least 5).")
    var runs: Int = 5
    @Flag(name: .long, help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard runs >= 5 else { throw ValidationError("--runs must be at least 5 for a median and a range") }
    }

    /// The two sizes, in bytes, as whole pages of `pageSize`; the default SMALL becomes one
    /// page on a mount of larger pages (the smallest guest of those pages).
    func sizes(pageSize: UInt64) throws -> (UInt64, UInt64) {
        let bytes = size.bytes
        var smallBytes = small.bytes
        if smallBytes % pageSize != 0, small == Self.defaultSmall { smallBytes = pageSize }
        guard bytes % pageSize == 0, smallBytes % pageSize == 0 else {
            throw CLIError("--size and --small must be whole \(ByteSize.format(pageSize)) pages", code: 2)
        }
        return (bytes, smallBytes)
    }
}

/// A temporary hugetlbfs mount with an in-process pool on it; everything is undone by `close()`.
final class BenchLab {
    let base = "/tmp/prezero-bench-\(Processes.current())"
    var mount: String { base + "/hugepages" }
    let pageSize: UInt64
    var current: PoolDaemon?

    init(pageSize: UInt64) throws {
        self.pageSize = pageSize
        try Files.makeDirectories(mount, mode: 0o755)
        try Mounts.mountHugetlbfs(at: mount, pageSize: pageSize)
    }

    func daemon(bandwidth: UInt64, fileSize: UInt64, refillDelayMs: Int) throws -> PoolDaemon {
        var c = Config()
        c.fileSize = .bytes(fileSize)
        c.socket = base + "/unused.sock"
        c.stateDir = base + "/state"
        c.minFree = .bytes(0)
        c.target = .bytes(0)
        c.learnedShapes = 0
        c.fillBandwidth = .bytes(bandwidth)
        c.refillDelayMs = refillDelayMs
        c.mounts = [MountConfig(path: mount)]
        var logger = Logger(label: "prezero-bench")
        logger.logLevel = .warning
        let d = try PoolDaemon(config: c, mounts: HostDiscovery.poolMounts(c).mounts, logger: logger)
        try d.start()
        current = d
        return d
    }

    /// The first touch of memory on these VMs is slow; touch the pages once before timing.
    func warm(_ bytes: UInt64) throws {
        _ = try timeFreshFile(bytes, populate: false)
    }

    /// Seconds to fallocate (populate == false) or to mmap + MADV_POPULATE_WRITE (true) a new file.
    func timeFreshFile(_ bytes: UInt64, populate: Bool) throws -> Double {
        let dir = try Files.openDirectory(path: mount)
        let fd = try Files.openFile(in: dir, name: "fresh", create: true)
        defer { try? Files.unlink(in: dir, "fresh") }
        let t = monotonicSeconds()
        if populate {
            try Files.truncate(fd, to: bytes)
            let m = try Mapping(fd, length: Int(bytes))
            try m.populateWrite()
        } else {
            try Files.allocate(fd, offset: 0, length: bytes)
        }
        return monotonicSeconds() - t
    }

    func send(_ d: PoolDaemon, _ r: Request) throws -> Response {
        let res = d.handle(r)
        if case .error(let e) = res { throw CLIError("bench: \(e.message)") }
        return res
    }

    func node(_ d: PoolDaemon) -> NodeStatus { d.status().mounts[0].nodes[0] }

    /// Fills one file of `bytes` and returns the daemon's own fill rate for it.
    func fill(_ d: PoolDaemon, _ bytes: UInt64) throws -> Double {
        _ = try send(d, .fill(PoolScope(target: .bytes(bytes))))
        try wait("the fill") { let n = node(d); return n.cleanBytes == bytes && n.fillingBytes == 0 }
        return node(d).fillRate
    }

    func claim(_ d: PoolDaemon, _ bytes: UInt64) throws -> ClaimResult {
        guard case .claim(let c) = try send(d, .claim(ClaimRequest(bytes: bytes, pageSize: pageSize, dest: mount + "/vm"))) else {
            throw CLIError("bench: the claim got no claim result")
        }
        guard c.outcome == .hit else { throw CLIError("bench: expected a hit, got \(c.outcome.rawValue)") }
        return c
    }

    func mapAndPopulate(_ path: String) throws -> (Mapping, Double) {
        let dir = try Files.openDirectory(path: mount)
        let fd = try Files.openFile(in: dir, name: (path as NSString).lastPathComponent)
        let size = try Files.status(fd).size
        let t = monotonicSeconds()
        let m = try Mapping(fd, length: Int(size))
        try m.populateWrite()
        return (m, monotonicSeconds() - t)
    }

    /// Empties the pool and waits until the kernel has every page back, so that the
    /// next run's baseline starts from the same free pages.
    func drain(_ d: PoolDaemon) throws {
        _ = try send(d, .drain(PoolScope()))
        try wait("the drain") { let n = node(d); return n.cleanBytes + n.fillingBytes + n.leasedBytes == 0 }
        try wait("the kernel to have every page back") {
            let c = HugePageCounters.host(pageSize: pageSize)
            return c.map { $0.free == $0.total } ?? true
        }
    }

    func wait(_ what: String, timeout: Double = 60, _ cond: () -> Bool) throws {
        let end = monotonicSeconds() + timeout
        while !cond() {
            guard monotonicSeconds() < end else { throw CLIError("bench: timed out waiting for \(what)") }
            sleepSeconds(0.002)
        }
    }

    func close() {
        current?.stop()
        try? Mounts.unmount(mount)
        Files.removeTree(base)
    }
}
