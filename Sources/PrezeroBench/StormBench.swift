import PrezeroClient
import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys
import Glibc

/// `prezero-bench storm`: a boot storm against a private prezerod's control socket. N
/// claims arrive at once, as N hooks would; each VM then populates its file, as QEMU does.
/// Then N releases at once, and the time until the pool is back at its target. The
/// baseline, in the same run: N VMs populating fresh files at once, as stock QEMU
/// preallocation does.
public struct StormBench {
    /// The storm's command-line settings, with their defaults.
    public struct Options: Sendable {
        public var vms = 32
        public var size: UInt64 = 256 << 20
        public var runs = 3
        public var pageSize: UInt64 = 2 << 20
        public var json = false
        /// N QEMUs through `prezero launch` instead of N claims.
        public var launch = false
        public var qemu = "qemu-system-x86_64"
        /// The prezero CLI for `launch`; nil: the one beside this binary.
        public var prezero: String?
        /// The defaults: 32 VMs of 256 MiB on 2 MiB pages, 3 runs.
        public init() {}
    }

    /// Latencies in seconds: median, 99th percentile and slowest.
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

    /// What `run` measured, as `--json` prints it.
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
        /// With --launch: QEMU's accelerator; the latencies are then spawn to QMP ready.
        public var launch: String?
        enum CodingKeys: String, CodingKey {
            case vms, bytes, runs, workers, claims, hits, launch
            case pageSize = "page_size", claimS = "claim_s", releaseS = "release_s", readyS = "ready_s"
            case stockReadyS = "stock_ready_s", stockVsPrezeroP50 = "stock_vs_prezero_p50"
            case stockVsPrezeroMax = "stock_vs_prezero_max", backToTargetS = "back_to_target_s"
        }
    }

    let o: Options
    let note: @Sendable (String) -> Void

    /// A storm with `o`; `note` gets a progress line per step.
    public init(_ o: Options, note: @escaping @Sendable (String) -> Void) {
        self.o = o
        self.note = note
    }

    /// Runs the stock baseline, then the storm against a private prezerod, on a temporary mount.
    /// Throws a `BenchError` when the node lacks the free pages the storm needs.
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

        let vm = o.launch ? try Launcher(o, lab: lab) : nil
        // Stock: every VM populates a fresh file of its own (or QEMU preallocates one), all at once.
        var stock: [Double] = []
        for r in 1...o.runs {
            let size = o.size
            if let vm {
                stock += try vm.startAll(n, mem: { _ in lab.mount }, through: nil)
            } else {
                stock += try together(n) { i in try lab.timeFreshFile(size, populate: true, name: "stock-\(i)") }
            }
            note("  stock run \(r): \(n) \(vm == nil ? "fresh files populated" : "QEMUs preallocating fresh files") at once, slowest \(Figures.fixed(stock.suffix(n).max()!, 3)) s")
        }

        let d = try lab.daemon(fileSize: o.size, workers: nil, refillDelayMs: 0, serve: true)
        let workers = d.status().mounts[0].nodes.first { $0.node == lab.nodeID }?.fillWorkers ?? 1
        _ = try lab.fill(d, need)
        let socket = lab.socket, mount = lab.mount, size = o.size
        var claims: [Double] = [], ready: [Double] = [], releases: [Double] = [], back: [Double] = []
        var hits = 0
        for r in 1...o.runs where vm != nil {
            // N QEMUs through prezero launch, each timed to QMP ready; stopping them all releases the files.
            let t = try vm!.startAll(n, mem: { _ in "{prezero:m0}" }, through: socket) { running in
                let leased = Int(d.status().mounts[0].nodes.map(\.leasedBytes).reduce(0, +) / size)
                hits += leased
                running()
                return leased
            }
            ready += t
            let t0 = monotonicSeconds()
            try lab.wait("the pool back at its target") { let s = lab.node(d); return s.cleanBytes == need && s.fillingBytes == 0 && s.leasedBytes == 0 }
            back.append(monotonicSeconds() - t0)
            note("  launch run \(r): \(hits) hits so far, slowest QEMU ready in \(Figures.fixed(t.max()!, 3)) s, back to target in \(Figures.fixed(back.last!, 3)) s")
        }
        for r in 1...o.runs where vm == nil {
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
                      backToTargetS: Spread(back), launch: vm?.accel)
    }

    /// The result as the lines the CLI prints without `--json`.
    public static func text(_ r: Result) -> String {
        if let accel = r.launch {
            return """
                prezero bench storm --launch: \(r.vms) QEMUs (\(accel)) × \(ByteSize.format(r.bytes)) of \(ByteSize.format(r.pageSize)) pages at once, \(r.runs) runs, fill_workers \(r.workers)
                hits         \(r.hits) of \(r.claims)
                QEMU ready   stock (prealloc=on, a fresh file each) \(r.stockReadyS.text)
                             prezero launch (a pre-zeroed file each) \(r.readyS.text)
                             stock / prezero: \(Figures.fixed(r.stockVsPrezeroP50, 1))× at p50, \(Figures.fixed(r.stockVsPrezeroMax, 1))× at max
                back to target after the QEMUs stop: \(r.backToTargetS.text(3)) s
                """
        }
        return """
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

/// N QEMUs started at once, each timed from its spawn until it answers on QMP.
struct Launcher: Sendable {
    let qemu: String
    let prezero: String
    let accel: String
    let size: UInt64
    let pageSize: UInt64
    let work: String

    init(_ o: StormBench.Options, lab: Lab) throws {
        prezero = o.prezero ?? Processes.executableDirectory() + "/prezero"
        guard Files.status(followingPath: prezero) != nil else {
            throw BenchError("storm --launch needs the prezero CLI: none at \(prezero); pass --prezero PATH")
        }
        qemu = o.qemu
        accel = HostAccelerator.forDirectQEMU().accel.rawValue
        size = o.size
        pageSize = o.pageSize
        work = lab.base
    }

    /// Starts `n` QEMUs at once with their memory at `mem(i)`, through `prezero launch` on
    /// `socket` when given; once every one is up, `whileUp` runs (it is handed the stop), then
    /// they are stopped. Each one's seconds from spawn to QMP ready.
    func startAll(_ n: Int, mem: @escaping @Sendable (Int) -> String, through socket: String?,
                  whileUp: ((() -> Void) -> Int)? = nil) throws -> [Double] {
        let up = try together(n) { i -> (Double, ChildProcess) in
            let qmp = "\(work)/qmp-\(i)"
            let mib = size >> 20
            var args = [qemu, "-accel", accel, "-nodefaults", "-nographic", "-display", "none", "-m", "\(mib)M",
                        "-object", "memory-backend-file,id=m0,mem-path=\(mem(i)),size=\(mib)M,share=on,prealloc=on",
                        "-machine", "pc,memory-backend=m0", "-qmp", "unix:\(qmp),server=on,wait=off"]
            if let socket {
                args = [prezero, "launch", "--socket", socket, "--memory", "m0=\(mib)M", "--page-size", pageSize == 1 << 30 ? "1G" : "2M", "--"] + args
            }
            let t = monotonicSeconds()
            let p: ChildProcess
            do {
                p = try ChildProcess(args, stderr: "\(work)/vm-\(i).err")
            } catch {
                throw BenchError("cannot start \(args[0]): \(error)")
            }
            guard QMP.waitReady(socket: qmp, timeout: 300, alive: { p.isRunning }) else {
                p.signal(SIGKILL)
                _ = try? p.wait(timeout: 10)
                let err = Files.readText("\(work)/vm-\(i).err") ?? ""
                throw BenchError("VM \(i): QEMU did not answer on QMP: \(err.split(separator: "\n").last ?? "no message")")
            }
            return (monotonicSeconds() - t, p)
        }
        let stop = {
            for (_, p) in up { p.signal(SIGTERM) }
            for (_, p) in up { _ = try? p.wait(timeout: 60) }
        }
        if let whileUp { _ = whileUp(stop) } else { stop() }
        return up.map(\.0)
    }
}
