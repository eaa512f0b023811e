import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroSys

/// `prezero-bench pool`: the pool's rates beside the machine's own limits, measured in the
/// same run on a temporary hugetlbfs mount, on the first NUMA node:
/// - fill: prezero with 1 worker and with N, against one thread fallocating one file and
///   N threads each fallocating its own file, bound to the same node (the machine's limit);
/// - recycle: a released file back to a clean one, against a raw fallocate of its size;
/// - hand-over: populating a pool file against populating a fresh one (what QEMU's
///   prealloc does), at the largest size the host's free pages allow, for each page size;
/// - fill budget: the fill rate under fill_bandwidth against the budget.
public struct PoolBench {
    /// The pool bench's command-line settings, with their defaults.
    public struct Options: Sendable {
        public var size: UInt64 = 8 << 30
        public var runs = 5
        public var workers: Int?
        public var budget: UInt64 = 1 << 30
        public var json = false
        /// The parts to run; all by default.
        public var only: Set<Part> = Set(Part.allCases)
        /// The defaults: 8 GiB, 5 runs, a budget of 1 GiB/s, every part.
        public init() {}
    }

    /// The parts `--only` may pick.
    public enum Part: String, CaseIterable, Sendable {
        case fill, recycle, handover, budget
    }

    /// Populating a pool file against populating a fresh one, for one page size.
    public struct Handover: Codable, Sendable {
        public var pageSize: UInt64
        public var bytes: UInt64
        public var freshS: Spread
        /// The fresh file populated by `threads` threads, as QEMU's prealloc-threads does.
        public var threads: Int
        public var freshThreadsS: Spread
        public var poolS: Spread
        /// The faster stock way (one thread or `threads`) against the pool file, run by run.
        public var ratio: Spread
        enum CodingKeys: String, CodingKey {
            case bytes, ratio, threads
            case pageSize = "page_size", freshS = "fresh_s", freshThreadsS = "fresh_threads_s", poolS = "pool_s"
        }
    }

    /// What `run` measured, as `--json` prints it; a part that did not run is nil or empty.
    public struct Result: Codable, Sendable {
        public var node: Int
        public var nodeCPUs: Int
        public var pageSize: UInt64
        public var fillBytes: UInt64
        public var workers: Int
        public var fill: Fill?
        public var recycle: Recycle?
        public var handover: [Handover]
        public var budget: Budget?
        enum CodingKeys: String, CodingKey {
            case node, workers, fill, recycle, handover, budget
            case nodeCPUs = "node_cpus", pageSize = "page_size", fillBytes = "fill_bytes"
        }
    }

    /// Fill rates in bytes per second, prezero's beside raw fallocate's, and their ratios.
    public struct Fill: Codable, Sendable {
        public var fallocateOneFileBps: Spread
        public var fallocateFilesBps: Spread
        public var oneWorkerBps: Spread
        public var workersBps: Spread
        public var workersVsOne: Spread
        public var workersVsFallocateFiles: Spread
        public var oneWorkerVsFallocateOneFile: Spread
        enum CodingKeys: String, CodingKey {
            case fallocateOneFileBps = "fallocate_one_file_bps", fallocateFilesBps = "fallocate_files_bps"
            case oneWorkerBps = "one_worker_bps", workersBps = "workers_bps"
            case workersVsOne = "workers_vs_one", workersVsFallocateFiles = "workers_vs_fallocate_files"
            case oneWorkerVsFallocateOneFile = "one_worker_vs_fallocate_one_file"
        }
    }

    /// A released file back to a clean one, against a raw fallocate of its size.
    public struct Recycle: Codable, Sendable {
        public var bytes: UInt64
        public var releaseToCleanS: Spread
        public var fallocateS: Spread
        public var vsFallocate: Spread
        enum CodingKeys: String, CodingKey {
            case bytes
            case releaseToCleanS = "release_to_clean_s", fallocateS = "fallocate_s", vsFallocate = "vs_fallocate"
        }
    }

    /// The fill budget, and how far each run's fill rate was from it (a fraction of the budget).
    public struct Budget: Codable, Sendable {
        public var bps: Double
        public var error: Spread
    }

    let o: Options
    let note: @Sendable (String) -> Void

    /// A bench with `o`; `note` gets a progress line per run.
    public init(_ o: Options, note: @escaping @Sendable (String) -> Void) {
        self.o = o
        self.note = note
    }

    static let twoMiB: UInt64 = 2 << 20

    /// Runs the parts in `o.only`; throws a `BenchError` when the node lacks the free pages they need.
    public func run() throws -> Result {
        let node = Numa.memoryNodes().first ?? 0
        let cpus = Numa.cpus(ofNode: node)
        // The default count, but never fewer than 2: the point is the comparison.
        let n = o.workers ?? max(2, FillWorkers.count(configured: nil, nodeCPUs: cpus.count))
        let ps = Self.twoMiB
        let ratio = { (a: [Double], b: [Double]) in Spread(zip(a, b).map { $0 / $1 }) }
        var fill: Fill?, recycle: Recycle?, budget: Budget?
        var bytes: UInt64 = 0
        // Fill, recycle and budget share one warmed 2 MiB mount; a hand-over alone needs none.
        if !o.only.isDisjoint(with: [.fill, .recycle, .budget]) {
            let lab = try Lab(pageSize: ps)
            defer { lab.close() }
            let free = (HugePageCounters.node(node, pageSize: ps)?.free ?? 0) * ps
            bytes = min(o.size, free) / (UInt64(n) * ps) * (UInt64(n) * ps)
            guard bytes >= UInt64(n) * 16 * ps else {
                throw BenchError("bench pool needs at least \(ByteSize.format(UInt64(n) * 16 * ps)) of free 2 MiB pages on node \(node) (\(ByteSize.format(free)) free); reserve some: echo 4096 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
            }
            note("bench pool: node \(node) (\(cpus.count) CPUs), \(ByteSize.format(bytes)) of 2 MiB pages, \(n) workers, \(o.runs) runs; warming the pages once")
            try lab.warm(bytes)

            // Fill: one file, N files at once, prezero with 1 worker and with N.
            if o.only.contains(.fill) {
                let per = bytes / UInt64(n)
                var oneFile: [Double] = [], files: [Double] = [], one: [Double] = [], many: [Double] = []
                for r in 1...o.runs {
                    oneFile.append(Double(bytes) / (try lab.timeFreshFile(bytes, populate: false)))
                    let t = monotonicSeconds()
                    _ = try together(n) { i in
                        try? Numa.pinThread(toCPUs: cpus)
                        Numa.bindMemory(toNode: node)
                        return try lab.timeFreshFile(per, populate: false, name: "fresh-\(i)")
                    }
                    files.append(Double(bytes) / (monotonicSeconds() - t))
                    for workers in [1, n] {
                        let d = try lab.daemon(fileSize: per, workers: workers)
                        let s = try lab.fill(d, bytes)
                        try lab.drain(d)
                        lab.stop()
                        if workers == 1 { one.append(Double(bytes) / s) } else { many.append(Double(bytes) / s) }
                    }
                    note("  fill run \(r): fallocate 1 file \(Figures.gbps(oneFile.last!)), \(n) files \(Figures.gbps(files.last!)); prezero 1 worker \(Figures.gbps(one.last!)), \(n) workers \(Figures.gbps(many.last!))")
                }
                fill = Fill(fallocateOneFileBps: Spread(oneFile), fallocateFilesBps: Spread(files), oneWorkerBps: Spread(one),
                            workersBps: Spread(many), workersVsOne: ratio(many, one), workersVsFallocateFiles: ratio(many, files),
                            oneWorkerVsFallocateOneFile: ratio(one, oneFile))
            }

            // Recycle: a pool of two files of half the size, every page in them, refill_delay_ms 0.
            // A claimed file is written over by its tenant and released; the time runs from the
            // release to a new file in clean/: the old one's pages punched back, a new one filled.
            if o.only.contains(.recycle) {
                let half = bytes / 2 / ps * ps
                var times: [Double] = [], raw: [Double] = []
                let d = try lab.daemon(fileSize: half, workers: n, refillDelayMs: 0)
                _ = try lab.fill(d, 2 * half)
                for r in 1...o.runs {
                    let c = try lab.claim(d, half)
                    let (map, _) = try lab.mapAndPopulate(c.path)
                    Zeroing.fill(map.base, map.length, byte: 0xA5)
                    map.unmap()
                    let taken = lab.node(d).recycledFiles
                    let t = monotonicSeconds()
                    _ = try lab.send(d, .release(ReleaseRequest(lease: c.lease)))
                    try lab.wait("the recycle") {
                        let s = lab.node(d)
                        return s.recycledFiles > taken && s.cleanBytes == 2 * half && s.fillingBytes == 0
                    }
                    times.append(monotonicSeconds() - t)
                    note("  recycle run \(r): release to a new clean file \(Figures.fixed(times.last!, 4)) s")
                }
                try lab.drain(d)
                lab.stop()
                for _ in 1...o.runs { raw.append(try lab.timeFreshFile(half, populate: false)) }
                recycle = Recycle(bytes: half, releaseToCleanS: Spread(times), fallocateS: Spread(raw), vsFallocate: ratio(raw, times))
            }

            // Fill budget: a fill long enough (2 s at the budget) that the bucket's burst is noise.
            if o.only.contains(.budget) {
                let rate = Double(o.budget)
                let tBytes = max(ps, min(bytes, UInt64(rate * 2) / ps * ps))
                var errors: [Double] = []
                let b = try lab.daemon(fileSize: tBytes, workers: n, bandwidth: o.budget)
                for r in 1...o.runs {
                    let got = Double(tBytes) / (try lab.fill(b, tBytes))
                    errors.append(abs(got - rate) / rate)
                    try lab.drain(b)
                    note("  budget run \(r): filled at \(Figures.gbps(got)) against a budget of \(Figures.gbps(rate))")
                }
                lab.stop()
                budget = Budget(bps: rate, error: Spread(errors))
            }
        }

        let handover = o.only.contains(.handover)
            ? try HugePageCounters.supportedPageSizes().sorted().compactMap { try handOver(pageSize: $0, node: node, threads: max(1, min(16, cpus.count))) }
            : []
        return Result(node: node, nodeCPUs: cpus.count, pageSize: ps, fillBytes: bytes, workers: n,
                      fill: fill, recycle: recycle, handover: handover, budget: budget)
    }

    /// Hand-over at the largest size the free pages of `pageSize` on `node` allow (capped by
    /// --size for 2 MiB pages); nil where there are too few of them to say anything.
    func handOver(pageSize ps: UInt64, node: Int, threads: Int) throws -> Handover? {
        let free = (HugePageCounters.node(node, pageSize: ps)?.free ?? 0) * ps
        let bytes = (ps == Self.twoMiB ? min(o.size, free) : free) / ps * ps
        guard bytes >= max(ps, 64 << 20) else {
            note("  hand-over of \(ByteSize.format(ps)) pages: skipped, \(ByteSize.format(free)) free on node \(node)")
            return nil
        }
        let lab = try Lab(pageSize: ps)
        defer { lab.close() }
        note("  hand-over of \(ByteSize.format(bytes)) of \(ByteSize.format(ps)) pages: warming")
        try lab.warm(bytes)
        var fresh: [Double] = [], freshThreads: [Double] = [], pooled: [Double] = []
        let d = try lab.daemon(fileSize: bytes, workers: nil)
        for r in 1...o.runs {
            fresh.append(try lab.timeFreshFile(bytes, populate: true))
            freshThreads.append(try lab.timeFreshFile(bytes, threads: threads))
            _ = try lab.fill(d, bytes)
            let c = try lab.claim(d, bytes)
            let (map, s) = try lab.mapAndPopulate(c.path)
            map.unmap()
            pooled.append(s)
            _ = try lab.send(d, .release(ReleaseRequest(lease: c.lease)))
            try lab.drain(d)
            note("  hand-over run \(r): fresh \(Figures.fixed(fresh.last!, 4)) s, \(threads) threads \(Figures.fixed(freshThreads.last!, 4)) s, pool file \(Figures.fixed(s, 5)) s")
        }
        let best = zip(fresh, freshThreads).map { min($0, $1) }
        return Handover(pageSize: ps, bytes: bytes, freshS: Spread(fresh), threads: threads, freshThreadsS: Spread(freshThreads),
                        poolS: Spread(pooled), ratio: Spread(zip(best, pooled).map { $0 / $1 }))
    }

    /// The table people read.
    public static func text(_ r: Result) -> String {
        let gb = { (s: Spread) in "\(Figures.fixed(s.median / 1e9, 2)) [\(Figures.fixed(s.min / 1e9, 2))–\(Figures.fixed(s.max / 1e9, 2))] GB/s" }
        let runs = r.fill?.oneWorkerBps.runs ?? r.recycle?.releaseToCleanS.runs ?? r.budget?.error.runs ?? r.handover.first?.poolS.runs ?? 0
        var lines = ["prezero bench pool: node \(r.node) (\(r.nodeCPUs) CPUs), \(ByteSize.format(r.fillBytes)) of \(ByteSize.format(r.pageSize)) pages, \(r.workers) workers, \(runs) runs, median [min–max]"]
        if let f = r.fill {
            let w = "\(r.workers)"
            let pad = String(repeating: " ", count: max(0, 3 - w.count))
            lines += [
                "fill        fallocate, 1 file              \(gb(f.fallocateOneFileBps))",
                "            fallocate, \(w) files at once\(pad)    \(gb(f.fallocateFilesBps))",
                "            prezero, 1 worker              \(gb(f.oneWorkerBps))   \(f.oneWorkerVsFallocateOneFile.text())× of 1 file",
                "            prezero, \(w) workers\(pad)           \(gb(f.workersBps))   \(f.workersVsOne.text())× of 1 worker, \(f.workersVsFallocateFiles.text())× of \(w) files",
            ]
        }
        if let c = r.recycle {
            lines.append("recycle     \(ByteSize.format(c.bytes)): fallocate \(c.fallocateS.text(4)) s, release to clean \(c.releaseToCleanS.text(4)) s, \(c.vsFallocate.text())× of fallocate")
        }
        for h in r.handover {
            lines.append("hand-over   \(ByteSize.format(h.bytes)) of \(ByteSize.format(h.pageSize)) pages: fresh \(h.freshS.text(4)) s, \(h.threads) threads \(h.freshThreadsS.text(4)) s, pool file \(h.poolS.text(5)) s, \(h.ratio.text(1))× of the faster fresh")
        }
        if let b = r.budget { lines.append("fill budget \(Figures.gbps(b.bps)): error \(b.error.text())") }
        return lines.joined(separator: "\n")
    }
}
