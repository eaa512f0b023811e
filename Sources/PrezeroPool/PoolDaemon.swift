import Dispatch
import Glibc
import Logging
import PrezeroCore
import PrezeroSys
import Synchronization

/// The daemon's engine: one pool per mount, one pinned worker per (mount, node),
/// a monitor that gives pages back and reclaims released leases, and the
/// request handlers the control server calls.
public final class PoolDaemon: Sendable {
    public let config: Config
    let logger: Logger
    let pools: [PoolDirectory]
    let book: Mutex<Book>
    let wakeups: [NodeKey: DispatchSemaphore]
    let threads = DispatchGroup()
    let zero: ZeroMethod
    let leaseJournal: String
    let reclaimLock = Mutex(())

    public init(config: Config, mounts: [PoolMount], logger: Logger) throws {
        self.config = config
        self.logger = logger
        pools = try mounts.map { try PoolDirectory(mount: $0, name: config.poolDir) }
        leaseJournal = config.stateDir + "/leases"
        try Files.makeDirectories(leaseJournal, mode: 0o700)
        zero = Scrub.chooseMethod(config.scrub.method, logger: logger)
        var b = Book()
        var wake: [NodeKey: DispatchSemaphore] = [:]
        for (mi, pool) in pools.enumerated() {
            let m = pool.mount
            b.learned.append(LearnedShapes(capacity: config.learnedShapes))
            b.quarantined.append(0)
            for n in m.nodes {
                let k = NodeKey(mount: mi, node: n)
                let target = m.config.nodes?[String(n)] ?? m.config.target ?? config.target
                let fileSize = (m.config.fileSize ?? config.fileSize).resolve(totalBytes: 0)
                var nb = NodeBook(node: n, target: target, minFree: m.config.minFree ?? config.minFree,
                                  fileSize: max(ByteSize.roundUp(fileSize, to: m.pageSize), m.pageSize))
                nb.stats.cpus = Numa.cpus(ofNode: n)
                b.nodes[k] = nb
                wake[k] = DispatchSemaphore(value: 0)
                if (HugePageCounters.node(n, pageSize: m.pageSize)?.total ?? 0) == 0 {
                    logger.warning("node \(n) has no \(ByteSize.format(m.pageSize)) huge pages reserved; its pool on \(m.path) stays empty", metadata: ["fix": "echo N > /sys/devices/system/node/node\(n)/hugepages/hugepages-\(m.pageSize / 1024)kB/nr_hugepages"])
                }
            }
        }
        book = Mutex(b)
        wakeups = wake
        try recover()
    }

    // MARK: start and stop

    /// Starts the node workers and the monitor.
    public func start() throws {
        for k in wakeups.keys.sorted(by: { ($0.mount, $0.node) < ($1.mount, $1.node) }) {
            threads.enter()
            try startThread { [self] in
                defer { threads.leave() }
                workerLoop(k)
            }
        }
        threads.enter()
        try startThread { [self] in
            defer { threads.leave() }
            monitorLoop()
        }
    }

    /// Stops every thread at its next chunk boundary and waits for them.
    public func stop(timeout: Double = 30) {
        book.withLock { $0.stopping = true }
        for w in wakeups.values { w.signal() }
        if threads.wait(timeout: .now() + timeout) == .timedOut {
            logger.warning("workers did not stop within \(timeout) s")
        }
        logger.info("stopped")
    }

    var stopping: Bool { book.withLock { $0.stopping } }

    func wake(_ k: NodeKey) { wakeups[k]?.signal() }
    func wakeAll() { for w in wakeups.values { w.signal() } }

    // MARK: recovery

    /// Rebuilds the book from the directories (see `Recovery`).
    func recover() throws {
        for (mi, pool) in pools.enumerated() {
            let listing = try pool.listing()
            var maxSeq: UInt64 = 0
            for f in listing {
                if let n = PoolFileName(f.name) ?? LeasedName(f.name)?.file { maxSeq = max(maxSeq, n.seq) }
            }
            book.withLock { $0.seq = max($0.seq, maxSeq) }
            for action in Recovery.plan(listing) {
                do {
                    try apply(action, mount: mi, pool: pool, listing: listing)
                } catch {
                    logger.error("recovery of \(pool.rootPath): \(action): \(error)")
                }
            }
            let s = book.withLock { b in b.nodes.filter { $0.key.mount == mi }.values.map { ($0.clean.count, $0.dirty.count, $0.resume.count) } }
            logger.info("pool \(pool.rootPath) recovered", metadata: [
                "clean": "\(s.map(\.0).reduce(0, +))", "dirty": "\(s.map(\.1).reduce(0, +))",
                "resumed_fills": "\(s.map(\.2).reduce(0, +))",
                "leases": "\(book.withLock { $0.leases.count })",
                "quarantined": "\(book.withLock { $0.quarantined[mi] })",
            ])
        }
    }

    private func apply(_ action: RecoveryAction, mount mi: Int, pool: PoolDirectory, listing: [ListedFile]) throws {
        switch action {
        case .keep(.quarantine, _):
            book.withLock { $0.quarantined[mi] += 1 }
        case .keep(.leased, let name):
            guard let ln = LeasedName(name), let st = try Files.status(in: pool.dir(.leased), name: name) else { return }
            let dest = Files.readText("\(leaseJournal)/\(ln.key)")
            book.withLock {
                $0.leases[ln.key] = Lease(key: ln.key, mount: mi, file: ln.file, dest: dest, inode: st.inode,
                                          claiming: false)
            }
        case .keep(let state, let name):
            guard let f = PoolFileName(name) else { return }
            addToBook(state, f, mount: mi)
        case .move(let from, let name, let to, let newName):
            if from == .leased, let fd = try? pool.open(.leased, name) {
                try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o600)
            }
            try pool.move(from, name, to: to, newName)
            logger.info("recovery: \(from.rawValue)/\(name) -> \(to.rawValue)/\(newName)")
            if let f = PoolFileName(newName) { addToBook(to, f, mount: mi) }
        case .resumeFill(let name):
            guard let f = PoolFileName(name) else { return }
            book.withLock { $0.nodes[NodeKey(mount: mi, node: f.node)]?.resume.append(f) }
            if book.withLock({ $0.nodes[NodeKey(mount: mi, node: f.node)] == nil }) {
                // A node this host no longer has: its pages cannot be placed right.
                try pool.quarantine(.filling, name, seq: book.withLock { $0.nextSeq() })
            }
        case .quarantine(let state, let name, let reason):
            try pool.quarantine(state, name, seq: book.withLock { $0.nextSeq() })
            book.withLock { $0.quarantined[mi] += 1 }
            logger.warning("quarantined \(state.rawValue)/\(name): \(reason)")
        }
    }

    private func addToBook(_ state: PoolState, _ f: PoolFileName, mount mi: Int) {
        let k = NodeKey(mount: mi, node: f.node)
        let known = book.withLock { b -> Bool in
            guard b.nodes[k] != nil else { return false }
            switch state {
            case .clean: b.nodes[k]!.clean.append(f)
            case .dirty: b.nodes[k]!.dirty.append(f)
            default: break
            }
            return true
        }
        if !known {
            // A file from a node this host does not have: hand nothing out from it.
            let pool = pools[mi]
            try? pool.quarantine(state, f.description, seq: book.withLock { $0.nextSeq() })
            book.withLock { $0.quarantined[mi] += 1 }
            logger.warning("quarantined \(state.rawValue)/\(f): node \(f.node) is not on this host")
        }
    }

    // MARK: counters

    /// Free and total huge pages of a node, in bytes. Pages promised to mappings
    /// (reserved, not yet faulted) count as taken: the kernel only counts
    /// reservations host-wide, so they are subtracted from every node.
    func nodeCounters(_ k: NodeKey) -> (free: UInt64, total: UInt64) {
        let ps = pools[k.mount].mount.pageSize
        let c = HugePageCounters.node(k.node, pageSize: ps)
        let free = c?.free ?? 0
        let reserved = HugePageCounters.reserved(pageSize: ps)
        return ((free - min(free, reserved)) * ps, (c?.total ?? 0) * ps)
    }

    /// Bytes that must stay free on a node: `min_free`, plus (for filling only) the
    /// pages a recent make-room set aside for a launch. The hold keeps fills out of
    /// those pages; it does not make the daemon give more back once the launch took them.
    func keepFree(_ nb: NodeBook, totalBytes: UInt64, pageSize: UInt64, forFill: Bool) -> UInt64 {
        let minFree = ByteSize.roundUp(nb.minFree.resolve(totalBytes: totalBytes), to: pageSize)
        let hold = forFill && monotonicSeconds() < nb.holdUntil ? nb.holdPages * pageSize : 0
        return minFree + hold
    }
}
