import Dispatch
import Logging
import PrezeroCore
import PrezeroHost
import PrezeroProtocol
import PrezeroSys

/// The daemon: one pool per mount, `fill_workers` pinned workers per (mount, node), a monitor
/// that gives pages back and reclaims released leases, and the request handlers the
/// control server calls. What to do is decided by `PoolState` (PrezeroCore) and done
/// by `PoolEngine` through the host's file system; this class owns the threads.
public final class PoolDaemon: Sendable {
    public let config: Config
    package let logger: Logger
    let pools: [PoolDirectory]
    let engine: PoolEngine
    /// The workers' fills, run by `engine`'s rules.
    let jobs: JobRunner
    /// The engine's file system, for the destinations requests open (`HostFileSystem.using`).
    let host: HostFileSystem
    /// Each node's workers, one semaphore each: a wake-up reaches them all.
    let wakeups: [NodeKey: [DispatchSemaphore]]
    let threads = DispatchGroup()
    /// Requests refused and hand-overs failed since start, for status and the metrics.
    let refusals = Locked<(refused: [String: UInt64], failedHandovers: UInt64)>(([:], 0))
    /// libvirt's hook calls, handed in by prezerod (they need an XML parser this target does not link).
    let hooks: (any HookHandling)?

    /// Opens each mount's pool directories and recovers the pool from them; no thread starts
    /// before `start`. `hooks` handles libvirt's hook calls; without it they are refused.
    public init(config: Config, mounts: [PoolMount], logger: Logger, hooks: (any HookHandling)? = nil) throws {
        self.config = config
        self.logger = logger
        self.hooks = hooks
        pools = try mounts.map { try PoolDirectory(mount: $0, name: config.poolDir) }
        var state = PoolState(config: config, mounts: mounts.map { ($0.pageSize, $0.nodes, $0.config) })
        var wake: [NodeKey: [DispatchSemaphore]] = [:]
        for k in state.keys {
            let m = mounts[k.mount]
            let cpus = Numa.cpus(ofNode: k.node)
            let workers = FillWorkers.count(configured: config.fillWorkers, nodeCPUs: cpus.count)
            state.nodes[k]?.stats.cpus = cpus
            state.nodes[k]?.stats.fillWorkers = workers
            wake[k] = (0..<workers).map { _ in DispatchSemaphore(value: 0) }
            if (HugePageCounters.node(k.node, pageSize: m.pageSize)?.total ?? 0) == 0 {
                logger.warning("node \(k.node) has no \(ByteSize.format(m.pageSize)) huge pages reserved; its pool on \(m.path) stays empty", metadata: ["fix": "echo N > /sys/devices/system/node/node\(k.node)/hugepages/hugepages-\(m.pageSize / 1024)kB/nr_hugepages"])
            }
        }
        wakeups = wake
        let signals = wake
        let fs = try HostFileSystem(pools: pools, stateDir: config.stateDir, nodes: state.keys)
        host = fs
        engine = PoolEngine(fs: fs, state: state, logger: logger, clock: monotonicSeconds, pause: sleepSeconds,
                            wake: { k in for w in signals[k] ?? [] { w.signal() } })
        jobs = JobRunner(engine: engine)
        try engine.recover()
        for (mi, pool) in pools.enumerated() {
            let s = engine.snapshot()
            let nodes = s.nodes.filter { $0.key.mount == mi }.values
            logger.info("pool \(pool.rootPath) recovered", metadata: [
                "clean": "\(nodes.map(\.clean.count).reduce(0, +))", "resumed_fills": "\(nodes.map(\.resume.count).reduce(0, +))",
                "leases": "\(s.leases.values.filter { $0.mount == mi }.count)", "quarantined": "\(s.mounts[mi].quarantined)",
            ])
        }
    }

    // MARK: start and stop

    /// Starts the node workers and the monitor.
    public func start() throws {
        for k in wakeups.keys.sorted() {
            for w in wakeups[k]!.indices {
                threads.enter()
                try startThread { [self] in
                    defer { threads.leave() }
                    workerLoop(k, w)
                }
            }
            logger.info("\(wakeups[k]!.count) fill worker(s) on node \(k.node) of \(pools[k.mount].mount.path)")
        }
        threads.enter()
        try startThread { [self] in
            defer { threads.leave() }
            monitorLoop()
        }
    }

    /// Stops every thread at its next chunk boundary and waits for them.
    public func stop(timeout: Double = 30) {
        engine.stop()
        for w in wakeups.values.joined() { w.signal() }
        if threads.wait(timeout: .now() + timeout) == .timedOut {
            logger.warning("workers did not stop within \(timeout) s")
        }
        logger.info("stopped")
    }

    var stopping: Bool { engine.stopping }

    func wake(_ k: NodeKey) { for w in wakeups[k] ?? [] { w.signal() } }

    // MARK: threads

    /// Worker `w` of one (mount, node): pinned to the node's CPUs, its memory bound
    /// to the node, so that every page it fills or faults in lands there. Each fills
    /// its own file: one file's fallocate does not go faster for more threads.
    func workerLoop(_ k: NodeKey, _ w: Int) {
        let pool = pools[k.mount]
        let cpus = Numa.cpus(ofNode: k.node)
        do {
            try Numa.pinThread(toCPUs: cpus)
        } catch {
            logger.error("worker \(pool.mount.path) node \(k.node): cannot pin to CPUs \(cpus): \(error)")
        }
        Numa.bindMemory(toNode: k.node)
        logger.debug("worker started", metadata: ["mount": "\(pool.mount.path)", "node": "\(k.node)", "worker": "\(w)",
                                                 "cpus": "\(Numa.threadCPUs())", "tid": "\(Numa.threadID())"])
        while true {
            switch jobs.nextJob(k) {
            case .stop?:
                return
            case let job?:
                jobs.perform(job, on: k)
            case nil:
                _ = wakeups[k]![w].wait(timeout: .now() + .milliseconds(config.monitorIntervalMs))
            }
        }
    }

    /// Gives pages back (min_free, the target), takes back the files of ended leases, and
    /// notices pinned pages that came back.
    func monitorLoop() {
        var lastReclaim = 0.0
        while !stopping {
            for k in wakeups.keys.sorted() {
                let freed = engine.yieldIfShort(k)
                if freed > 0 {
                    logger.info("yielded \(ByteSize.format(freed)) on node \(k.node) of \(pools[k.mount].mount.path): free pages fell below what must stay free")
                }
                engine.trimToTarget(k)
            }
            let now = monotonicSeconds()
            if now - lastReclaim >= Double(config.reclaimIntervalMs) / 1000 {
                engine.reclaim()
                engine.settleHeld()
                lastReclaim = now
            }
            sleepSeconds(Double(config.monitorIntervalMs) / 1000)
        }
    }
}
