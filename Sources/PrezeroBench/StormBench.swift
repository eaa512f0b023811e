import PrezeroClient
import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroSys

/// `prezero-bench storm`: a boot storm against a private prezerod's control socket. N
/// claims arrive at once, as N hooks would; each VM then populates its file, as QEMU does.
/// Then N releases at once, and the time until the pool is back at its target. The
/// baseline, in the same run: N VMs populating fresh files at once, as stock QEMU
/// preallocation does.
public struct StormBench {
    public struct Options: Sendable {
        public var vms = 32
        public var size: UInt64 = 256 << 20
        public var runs = 3
        public var pageSize: UInt64 = 2 << 20
        public var json = false
        public init() {}
    }

    public struct Latency: Codable, Sendable {
        public var p50: Double
        public var p99: Double
        public var max: Double
        init(_ xs: [Double]) {
            let s = xs.sorted()
            p50 = Figures.quantile(s, 0.5)
            p99 = Figures.quantile(s, 0.99)
            max = s.last ?? 0
        }
        var text: String { "p50 \(Figures.fixed(p50 * 1000, 1)) ms, p99 \(Figures.fixed(p99 * 1000, 1)) ms, max \(Figures.fixed(max * 1000, 1)) ms" }
    }

    public struct Result: Codable, Sendable {
        public var vms: Int
        public var bytes: UInt64
        public var pageSize: UInt64
        public var runs: Int
        public var workers: Int
        public var claims: Int
        public var hits: Int
        public var claimS: Latency
        public var releaseS: Latency
        public var readyS: Latency
        public var stockReadyS: Latency
        public var stockVsPrezeroP50: Double
        public var stockVsPrezeroMax: Double
        public var backToTargetS: Spread
        enum CodingKeys: String, CodingKey {
            case vms, bytes, runs, workers, claims, hits
            case pageSize = "page_size", claimS = "claim_s", releaseS = "release_s", readyS = "ready_s"
            case stockReadyS = "stock_ready_s", stockVsPrezeroP50 = "stock_vs_prezero_p50"
            case stockVsPrezeroMax = "stock_vs_prezero_max", backToTargetS = "back_to_target_s"
        }
    }

    let o: Options
    let note: @Sendable (String) -> Void

    public init(_ o: Options, note: @escaping @Sendable (String) -> Void) {
        self.o = o
        self.note = note
    }

    public func run() throws -> Result {
        let ps = o.pageSize, n = o.vms
        guard o.size % ps == 0 else { throw BenchError("--size must be whole \(ByteSize.format(ps)) pages", code: 2) }
        let lab = try Lab(pageSize: ps)
        defer { lab.close() }
        let need = UInt64(n) * o.size
        let free = (HugePageCounters.node(lab.nodeID, pageSize: ps)?.free ?? 0) * ps
        guard need <= free else {
            throw BenchError("storm of \(n) × \(ByteSize.format(o.size)) needs \(ByteSize.format(need)) of free \(ByteSize.format(ps)) pages on node \(lab.nodeID) (\(ByteSize.format(free)) free); reserve more or pass a smaller --vms or --size")
        }
        note("bench storm: \(n) VMs × \(ByteSize.format(o.size)) of \(ByteSize.format(ps)) pages on node \(lab.nodeID), \(o.runs) runs; warming the pages once")
        try lab.warm(need)

        // Stock: every VM populates a fresh file of its own, all at once.
        var stock: [Double] = []
        for r in 1...o.runs {
            let size = o.size
            stock += try together(n) { i in try lab.timeFreshFile(size, populate: true, name: "stock-\(i)") }
            note("  stock run \(r): \(n) fresh files populated at once, slowest \(Figures.fixed(stock.suffix(n).max()!, 3)) s")
        }

        let d = try lab.daemon(fileSize: o.size, workers: nil, refillDelayMs: 0, serve: true)
        let workers = d.status().mounts[0].nodes.first { $0.node == lab.nodeID }?.fillWorkers ?? 1
        _ = try lab.fill(d, need)
        let socket = lab.socket, mount = lab.mount, size = o.size
        var claims: [Double] = [], ready: [Double] = [], releases: [Double] = [], back: [Double] = []
        var hits = 0
        for r in 1...o.runs {
            let got = try together(n) { i -> (Double, Double, Bool, String) in
                let client = ControlClient(socket: socket, timeout: 30)
                let lease = "storm-\(r)-\(i)"
                let t = monotonicSeconds()
                let c = try client.claim(ClaimRequest(bytes: size, pageSize: ps, dest: "\(mount)/\(lease)", lease: lease))
                let claimed = monotonicSeconds() - t
                guard c.outcome != .miss else { return (claimed, claimed, false, lease) }
                let (map, _) = try lab.mapAndPopulate(c.path)
                map.unmap()
                return (claimed, monotonicSeconds() - t, c.outcome == .hit, lease)
            }
            claims += got.map(\.0)
            ready += got.map(\.1)
            hits += got.count { $0.2 }
            let t = monotonicSeconds()
            releases += try together(n) { i in
                let t = monotonicSeconds()
                _ = try ControlClient(socket: socket, timeout: 30).release(ReleaseRequest(lease: got[i].3))
                return monotonicSeconds() - t
            }
            try lab.wait("the pool back at its target") { let s = lab.node(d); return s.cleanBytes == need && s.fillingBytes == 0 }
            back.append(monotonicSeconds() - t)
            note("  storm run \(r): \(got.count { $0.2 }) of \(n) hits, slowest claim \(Figures.fixed(got.map(\.0).max()! * 1000, 1)) ms, back to target in \(Figures.fixed(back.last!, 3)) s")
        }
        let (s, p) = (Latency(stock), Latency(ready))
        return Result(vms: n, bytes: o.size, pageSize: ps, runs: o.runs, workers: workers, claims: n * o.runs, hits: hits,
                      claimS: Latency(claims), releaseS: Latency(releases), readyS: p, stockReadyS: s,
                      stockVsPrezeroP50: s.p50 / max(p.p50, 1e-9), stockVsPrezeroMax: s.max / max(p.max, 1e-9),
                      backToTargetS: Spread(back))
    }

    public static func text(_ r: Result) -> String {
        """
        prezero bench storm: \(r.vms) VMs × \(ByteSize.format(r.bytes)) of \(ByteSize.format(r.pageSize)) pages at once, \(r.runs) runs, fill_workers \(r.workers)
        claims       \(r.hits) of \(r.claims) hits; \(r.claimS.text)
        memory ready stock (each VM populates a fresh file) \(r.stockReadyS.text)
                     prezero (claim + populate the pool file) \(r.readyS.text)
                     stock / prezero: \(Figures.fixed(r.stockVsPrezeroP50, 1))× at p50, \(Figures.fixed(r.stockVsPrezeroMax, 1))× at max
        releases     \(r.releaseS.text)
        back to target after the releases: \(r.backToTargetS.text(3)) s
        """
    }
}
