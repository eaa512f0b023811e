import Logging
import PrezeroCore
import PrezeroProtocol
import Synchronization

/// The one executor: it asks `PoolState`'s transitions what to do, performs the
/// effects they return through a `PoolFileSystem`, and settles each operation
/// through the state's commit / compensation. Threads, pinning and pacing stay with
/// the caller; the decisions live in PrezeroCore.
public final class PoolEngine: Sendable {
    public let fs: any PoolFileSystem
    public let state: Mutex<PoolState>
    let logger: Logger
    let clock: @Sendable () -> Double
    /// Waits (bandwidth budgets, retries after errors). The simulation passes a no-op.
    let pause: @Sendable (Double) -> Void
    /// Tells a node's worker that there is work (a reclaimed file to scrub).
    let wake: @Sendable (NodeKey) -> Void
    let reclaimLock = Mutex(())

    public init(fs: any PoolFileSystem, state: PoolState, logger: Logger, clock: @escaping @Sendable () -> Double,
                pause: @escaping @Sendable (Double) -> Void, wake: @escaping @Sendable (NodeKey) -> Void) {
        self.fs = fs
        self.state = Mutex(state)
        self.logger = logger
        self.clock = clock
        self.pause = pause
        self.wake = wake
    }

    /// The daemon's configuration: the state's, which is the only copy.
    public var config: Config { state.withLock { $0.config } }
    public var stopping: Bool { state.withLock { $0.stopping } }
    public func stop() { state.withLock { $0.stopping = true } }

    // MARK: the executor

    /// Where an operation failed: the effect and its error.
    public struct Failure: Error, Sendable {
        public var index: Int
        public var effect: Effect
        public var error: EffectError
    }

    /// Performs an operation's effects in order. All succeed: the state commits. One
    /// fails: its compensation runs and the state settles as compensated; if the
    /// compensation fails too, the state abandons the file to a restart's recovery.
    @discardableResult
    public func run(_ op: PoolOp) -> Result<UInt64?, Failure> {
        var inode: UInt64? = nil
        for (i, e) in op.effects.enumerated() {
            do throws(EffectError) {
                if let n = try fs.perform(e) { inode = n }
            } catch {
                var undone = true
                for c in op.compensation(failedAt: i) {
                    do throws(EffectError) {
                        _ = try fs.perform(c)
                    } catch let ce {
                        logger.error("\(op): undoing after '\(e)' failed: \(c): \(ce); left for recovery at the next start")
                        undone = false
                        break
                    }
                }
                state.withLock { undone ? $0.compensated(op, failedAt: i) : $0.abandon(op) }
                return .failure(Failure(index: i, effect: e, error: error))
            }
        }
        let now = clock()
        state.withLock { $0.commit(op, inode: inode, now: now) }
        return .success(inode)
    }

    func counters(mount mi: Int) -> [NodeKey: NodeCounters] {
        let keys = state.withLock { s in s.keys.filter { $0.mount == mi } }
        return Dictionary(uniqueKeysWithValues: keys.map { ($0, fs.counters($0)) })
    }

    // MARK: recovery

    /// Rebuilds the state of every mount from its directories (see `Recovery`).
    public func recover() throws(EffectError) {
        let mounts = state.withLock { $0.mounts.count }
        for mi in 0..<mounts {
            let listing = try fs.listing(mount: mi)
            var journal: [String: String] = [:]
            for f in listing where f.state == .leased {
                if let key = LeasedName(f.name)?.key { journal[key] = fs.journal(key) }
            }
            let ops = state.withLock { $0.recover(mount: mi, listing: listing, journal: { journal[$0] }) }
            for op in ops {
                guard case .recover(_, let step) = op else { continue }
                if case .failure(let f) = run(op) {
                    logger.error("recovery: \(step): \(f.error)")
                    continue
                }
                switch step {
                case .move(let from, let name, let to, let newName):
                    logger.info("recovery: \(from.rawValue)/\(name) -> \(to.rawValue)/\(newName)")
                case .quarantine(let state, let name, _, let reason):
                    logger.warning("quarantined \(state.rawValue)/\(name): \(reason)")
                default:
                    break
                }
            }
        }
    }

    // MARK: claim

    /// Hands out a clean file at the request's destination (see `ClaimPolicy`), keeping a
    /// second link in `leased/`. The request has been checked; a miss makes room instead.
    public func claim(_ c: ClaimRequest, mount mi: Int) throws(ControlError) -> ClaimResult {
        let ps = state.withLock { $0.mounts[mi].pageSize }
        let counters = counters(mount: mi)
        let now = clock()
        let (key, ticket) = try state.withLock { s throws(ControlError) in try s.beginClaim(c, mount: mi, counters: counters, now: now) }
        guard let t = ticket else { return miss(c, mount: mi) }
        switch run(.claim(t)) {
        case .success:
            logger.info("claim \(t.outcome.rawValue): \(t.picked) -> \(c.dest) (lease \(key), \(ByteSize.format(c.bytes)), node \(t.node))")
            return ClaimResult(outcome: t.outcome, path: c.dest, node: t.node, bytes: c.bytes, pageSize: ps, lease: key)
        case .failure(let f):
            if case .allocate = f.effect, f.error.isNoSpace {
                // The extension did not fit on the node: the file went back, still zero.
                logger.info("partial claim could not extend \(t.picked) to \(ByteSize.format(c.bytes)) on node \(t.node): \(f.error)")
                return miss(c, mount: mi)
            }
            if case .link = f.effect {
                let why = f.error.errno == EffectError.exists ? "something already exists there (a file or a symlink); remove it first" : "\(f.error)"
                throw ControlError(.badDestination, "claim: cannot create \(c.dest): \(why)")
            }
            logger.error("claim of \(t.picked) for lease \(key) failed: \(f.error)")
            throw ControlError(.system, "claim: \(f.error)")
        }
    }

    /// A miss hands nothing out; it makes room for the caller's own allocation instead,
    /// so that a launch the pool cannot serve never fails for lack of free pages.
    func miss(_ c: ClaimRequest, mount mi: Int) -> ClaimResult {
        let (node, ps) = state.withLock { ($0.countMiss(c, mount: mi), $0.mounts[mi].pageSize) }
        _ = try? makeRoom(MakeRoomRequest(pageSize: ps, pages: [String(node): c.bytes / ps]), mount: mi)
        logger.info("claim miss: no clean file for \(ByteSize.format(c.bytes)) on nodes \(c.nodes.isEmpty ? "any" : "\(c.nodes)"); made room instead")
        return ClaimResult(outcome: .miss, path: "", node: nil, bytes: c.bytes, pageSize: ps, lease: nil)
    }

    // MARK: release and reclaim

    /// Ends a lease: the destination name is removed, the file is root's again at once,
    /// and it goes to `dirty/` once no process holds it (now, or on a later reclaim pass).
    public func release(_ lease: Lease) throws(ControlError) -> ReleaseResult {
        guard !lease.claiming else { throw ControlError(.busy, "release: lease '\(lease.key)' is still being claimed; try again") }
        if case .failure(let f) = run(.release(lease)) {
            throw ControlError(.system, "release of lease '\(lease.key)': \(f.error)")
        }
        logger.info("lease \(lease.key) released")
        reclaim()
        let done = state.withLock { $0.leases[lease.key] == nil }
        return ReleaseResult(lease: lease.key, reclaimed: done)
    }

    /// Moves every lease whose destination name is gone (released, or its VMM's
    /// directory removed) and that no process holds any more from `leased/` to `dirty/`.
    /// Leases with one link left are made root-only before the holder scan, so that the
    /// former owner cannot open the file again after the scan has looked.
    /// One pass at a time: `release` and the monitor both call it.
    public func reclaim() {
        reclaimLock.withLock { _ in
            let now = clock()
            let candidates = state.withLock { $0.reclaimCandidates(now: now) }
            let mounts = state.withLock { $0.mounts.count }
            for mi in 0..<mounts {
                var ending: [(Lease, FileInfo)] = []
                for l in candidates where l.mount == mi {
                    do throws(EffectError) {
                        guard let info = try fs.status(l.ref) else {
                            logger.error("lease \(l.key): leased/\(l.leasedName) is gone")
                            state.withLock { $0.leaseVanished(l) }
                            continue
                        }
                        guard info.links == 1 else { continue }
                        if !info.rootOnly { _ = try fs.perform(.setOwner(l.ref, uid: 0, gid: 0, mode: 0o600)) }
                        ending.append((l, info))
                    } catch {
                        logger.error("reclaim of lease \(l.key): \(error)")
                    }
                }
                guard !ending.isEmpty else { continue }
                let holders = fs.holders(mount: mi)
                if !holders.complete {
                    logger.warning("reclaim: some processes could not be read in /proc; their leases stay leased")
                }
                for (l, info) in ending {
                    switch state.withLock({ $0.reclaimDecision(l, file: info, holders: holders) }) {
                    case .live:
                        continue
                    case .held:
                        state.withLock { $0.leaseHeld(l.key, now: now) }
                    case .reclaim(let op):
                        if case .failure(let f) = run(op) {
                            logger.error("reclaim of lease \(l.key) failed: \(f.error)")
                            continue
                        }
                        do throws(EffectError) {
                            _ = try fs.perform(.journal(lease: l.key, destination: nil))
                        } catch {
                            logger.warning("lease journal: \(error)")
                        }
                        logger.info("lease \(l.key) reclaimed: queued for scrubbing")
                        wake(NodeKey(mount: l.mount, node: l.file.node))
                    }
                }
            }
        }
    }

    // MARK: giving pages back

    /// Gives up to `bytes` back to the kernel on one node (see `PoolState.beginGiveBack`).
    /// Returns the bytes given back.
    @discardableResult
    public func giveBack(_ k: NodeKey, bytes: UInt64) -> UInt64 { giveBackCounted(k, bytes: bytes).freed }

    func giveBackCounted(_ k: NodeKey, bytes: UInt64) -> (freed: UInt64, files: Int) {
        var freed: UInt64 = 0
        let ops = state.withLock { $0.beginGiveBack(k, bytes: bytes) }
        for op in ops {
            switch (run(op), op) {
            case (.success, .giveBackWhole(_, let s, let f)): freed += s == .dirty ? f.bytes : 0
            case (.success, .giveBackClean(_, let f, let keep)): freed += f.bytes - keep
            case (.failure(let f), _): logger.error("\(op) failed: \(f.error)")
            default: break
            }
        }
        return (freed, ops.count)
    }

    /// Gives back on one node, round after round, until `need` (asked again after each
    /// round, with fresh counters) is 0 or nothing is left to give. The state's sizes are
    /// what files were named for; a file a guest punched holes into frees fewer pages,
    /// so one round can fall short. Returns the bytes given back.
    @discardableResult
    func giveBack(_ k: NodeKey, until need: () -> UInt64) -> UInt64 {
        var got: UInt64 = 0
        for _ in 0..<64 {
            let n = need()
            guard n > 0 else { break }
            let (freed, files) = giveBackCounted(k, bytes: n)
            got += freed
            if files == 0 { break }
        }
        return got
    }

    /// When a node's free pages fall below what must stay free, give pages back at once.
    public func yieldIfShort(_ k: NodeKey) -> UInt64 {
        giveBack(k) {
            let c = fs.counters(k)
            let now = clock()
            return state.withLock { $0.shortfall(k, counters: c, now: now) }
        }
    }

    /// A pool over its target gives the excess back, so the pool never holds more than asked.
    public func trimToTarget(_ k: NodeKey) {
        let total = fs.counters(k).total
        let excess = state.withLock { $0.excess(k, totalBytes: total) }
        if excess > 0 { giveBack(k, bytes: excess) }
    }

    /// Frees pages on each node until it has the requested number free, and keeps
    /// them free for `make_room_hold_s` so the launch that asked can take them.
    public func makeRoom(_ r: MakeRoomRequest, mount mi: Int) throws(ControlError) -> MakeRoomResult {
        let ps = state.withLock { $0.mounts[mi].pageSize }
        let before = counters(mount: mi)
        let wants = try state.withLock { s throws(ControlError) in try s.checkMakeRoom(r, mount: mi, counters: before) }
        var freed: [String: UInt64] = [:]
        var free: [String: UInt64] = [:]
        for (nodeText, k, pages) in wants {
            let got = giveBack(k) {
                let c = fs.counters(k)
                let now = clock()
                return state.withLock { $0.makeRoom(k, pages: pages, counters: c, now: now) }
            }
            freed[nodeText] = got / ps
            free[nodeText] = fs.counters(k).free / ps
            logger.info("make-room: node \(k.node) needs \(pages) pages, gave back \(got / ps), \(free[nodeText]!) free")
        }
        return MakeRoomResult(freed: freed, free: free)
    }

    /// make-room for a guest bound to no node (see `PoolState.makeRoomAnywhere`).
    public func makeRoomAnywhere(mount mi: Int, pages: UInt64) {
        func need() -> (need: UInt64, nodes: [NodeKey]) {
            let counters = counters(mount: mi)
            let now = clock()
            return state.withLock { $0.makeRoomAnywhere(mount: mi, pages: pages, counters: counters, now: now) }
        }
        for k in need().nodes { giveBack(k) { need().need } }
    }

    // MARK: the workers' jobs

    public func nextJob(_ k: NodeKey) -> Job? {
        let c = fs.counters(k)
        let now = clock()
        return state.withLock { $0.nextJob(k, counters: c, now: now) }
    }

    /// Runs a job to its end, waiting where the bandwidth budget says.
    public func perform(_ job: Job, on k: NodeKey) {
        var run = begin(job, on: k)
        while let wait = advance(&run) { pause(wait) }
    }

    /// Performs one effect of a job; a failure discards the job's file (its pages go
    /// back to the kernel, never to `clean/`). ENOSPC on an allocation is reported as
    /// `false`, not as a failure.
    func step(_ e: Effect, _ run: JobRun, _ what: String) -> Bool? {
        do throws(EffectError) {
            _ = try fs.perform(e)
            return true
        } catch {
            if case .allocate = e, error.isNoSpace { return false }
            logger.error("\(what) of \(run.ref) failed: \(e): \(error); giving its pages back to the kernel")
            self.run(.discard(run.key, run.ref))
            pause(1)  // do not spin on a persistent error
            return nil
        }
    }

    public func begin(_ job: Job, on k: NodeKey) -> JobRun {
        let ps = state.withLock { $0.pageSize(k) }
        switch job {
        case .fill(let f, let resume):
            let budget = config.fillBandwidth.resolve(totalBytes: 0)
            let chunk = WorkChunk.bytes(configured: config.fillChunk.resolve(totalBytes: 0), budget: budget, pageSize: ps)
            return JobRun(key: k, job: job, file: f, ref: FileRef(k.mount, .filling, f.description), phase: resume ? .resume : .create,
                          chunk: chunk, bucket: TokenBucket(rate: Double(budget), burst: Double(chunk), now: clock(), full: false),
                          started: clock(), pageSize: ps)
        case .scrub(let f):
            let budget = config.scrub.bandwidth.resolve(totalBytes: 0)
            let chunk = WorkChunk.bytes(configured: config.scrub.chunk.resolve(totalBytes: 0), budget: budget, pageSize: ps)
            return JobRun(key: k, job: job, file: f, ref: FileRef(k.mount, .scrubbing, f.description), phase: .take,
                          chunk: chunk, bucket: TokenBucket(rate: Double(budget), burst: Double(chunk), now: clock(), full: false),
                          started: clock(), pageSize: ps)
        case .stop:
            return JobRun(key: k, job: job, file: PoolFileName(node: k.node, bytes: 0, seq: 0),
                          ref: FileRef(k.mount, .filling, ""), phase: .over, chunk: ps,
                          bucket: TokenBucket(rate: 0, burst: 0, now: 0), started: 0, pageSize: ps)
        }
    }

    /// Advances a job by one step (at most one chunk of work). Returns how long to wait
    /// before the next step, or nil when the job is over.
    public func advance(_ r: inout JobRun) -> Double? {
        let k = r.key, f = r.file, ref = r.ref
        switch r.phase {
        case .over:
            return nil

        // Fill: fallocate in chunks; the kernel zeroes each page on the node. What was
        // filled goes to `clean/`.
        case .create:
            guard step(.create(ref), r, "fill") != nil else { return r.over() }
            r.phase = .fill
        case .resume:
            do throws(EffectError) {
                r.done = (try fs.status(ref)?.allocated ?? 0) / r.pageSize * r.pageSize
            } catch {
                logger.error("fill of \(ref): \(error)")
            }
            r.had = r.done
            r.phase = .fill
        case .fill:
            guard r.done < f.bytes else { r.phase = .fillEnd; break }
            let n = min(r.chunk, f.bytes - r.done)
            if let wait = r.pace(n, now: clock()) { return wait }
            let c = fs.counters(k)
            let now = clock()
            if state.withLock({ $0.fillShouldStop(k, counters: c, chunk: n, now: now) }) { r.phase = .fillEnd; break }
            guard let got = step(.allocate(ref, offset: r.done, length: n, node: k.node), r, "fill") else { return r.over() }
            guard got else {
                logger.debug("fill on node \(k.node) stopped: no free pages left on the node or the mount")
                if r.done == r.had { state.withLock { $0.fillBackOff(k, now: now) } }
                r.phase = .fillEnd
                break
            }
            r.done += n
            let done = r.done
            state.withLock { $0.fillProgress(k, f, done: done) }
        case .fillEnd:
            let secs = clock() - r.started
            if case .failure(let e) = run(.fillEnd(k, f, done: r.done, fresh: r.done - r.had, seconds: secs)) {
                logger.error("fill of \(f) on node \(k.node) failed: \(e.error); discarded")
                pause(1)
            } else if r.done > 0 {
                logger.debug("filled \(f.resized(r.done)) on node \(k.node)", metadata: ["seconds": "\(secs)"])
            }
            return r.over()

        // Scrub: moved to `scrubbing/`, holes filled on its node, zeroed within the
        // bandwidth budget, verified, then moved to `clean/`. A shutdown stops it at a
        // chunk boundary and it goes back to `dirty/`. A file that cannot be scrubbed is
        // given back to the kernel, never made clean.
        case .take:
            if case .failure(let e) = run(.scrubTake(k, f)) {
                logger.error("scrub: cannot take dirty/\(f): \(e.error); retrying later")
                pause(1)
                return r.over()
            }
            do throws(EffectError) {
                guard let info = try fs.status(ref) else { throw EffectError(errno: 2, message: "\(ref) is gone") }
                r.size = info.size
                // A file the VMM discarded whole (QEMU <discard/> punches every page at exit)
                // holds nothing of its guest: refilled, its pages come zeroed by the kernel.
                r.discarded = config.scrub.strategy == .zero && info.size > 0 && info.allocated == 0
            } catch {
                logger.error("scrub of \(f): \(error)")
                run(.discard(k, ref))
                return r.over()
            }
            r.phase = config.scrub.strategy == .zero ? .refill : .punchAll
        case .refill:
            // A VMM that discarded pages leaves holes: refill them first, on this node and in
            // chunks (pages already there are skipped), so that no write below faults a page in.
            guard r.at < r.size, !stopping else {
                r.done = r.discarded && !stopping ? r.size : 0
                if r.discarded && r.done == r.size {
                    logger.info("scrub of \(f): every page was discarded; refilled by the kernel, nothing to zero")
                }
                r.phase = .zero
                break
            }
            let n = min(r.chunk, r.size - r.at)
            guard let got = step(.allocate(ref, offset: r.at, length: n, node: k.node), r, "scrub") else { return r.over() }
            guard got else {
                logger.info("scrub of \(f): no free page to refill its holes; giving it back to the kernel")
                run(.discard(k, ref))
                return r.over()
            }
            r.at += n
        case .punchAll:
            if r.size > 0, step(.punch(ref, offset: 0, length: r.size), r, "scrub") == nil { return r.over() }
            r.phase = .zero
        case .zero:
            guard r.done < r.size else { r.phase = .scrubEnd; break }
            if stopping {
                let kernel = config.scrub.strategy == .kernel
                if case .failure(let e) = run(.scrubStop(k, f, done: r.done, kernel: kernel)) {
                    logger.error("scrub of \(f) could not stop cleanly: \(e.error); given back to the kernel")
                } else {
                    logger.info("scrub of \(f) stopped at \(r.done) of \(r.size) bytes for shutdown; it stays dirty")
                }
                return r.over()
            }
            let n = min(r.chunk, r.size - r.done)
            if let wait = r.pace(n, now: clock()) { return wait }
            let e: Effect = config.scrub.strategy == .zero
                ? .zero(ref, offset: r.done, length: n) : .allocate(ref, offset: r.done, length: n, node: k.node)
            guard let got = step(e, r, "scrub") else { return r.over() }
            // Someone took the pages meanwhile: keep the zeroed prefix only.
            if got { r.done += n } else { r.phase = .scrubEnd }
        case .scrubEnd:
            let secs = clock() - r.started
            if case .failure(let e) = run(.scrubEnd(k, f, size: r.size, done: r.done, seconds: secs)) {
                if e.error.errno == EffectError.notZero {
                    logger.critical("scrub of \(f) did not read back as zero; its pages went back to the kernel")
                } else {
                    logger.error("scrub of \(f) failed: \(e.error); its pages went back to the kernel")
                }
            } else {
                logger.debug("scrubbed \(f) on node \(k.node)", metadata: ["seconds": "\(secs)", "strategy": "\(config.scrub.strategy.rawValue)"])
            }
            return r.over()
        }
        return 0
    }
}

/// A worker's job in progress, advanced one step at a time by `PoolEngine.advance`.
public struct JobRun: Sendable {
    enum Phase: Sendable { case create, resume, fill, fillEnd, take, refill, punchAll, zero, scrubEnd, over }
    public let key: NodeKey
    public let job: Job
    let file: PoolFileName
    public let ref: FileRef
    var phase: Phase
    let chunk: UInt64
    var bucket: TokenBucket
    let started: Double
    let pageSize: UInt64
    var done: UInt64 = 0
    var had: UInt64 = 0
    var size: UInt64 = 0
    var at: UInt64 = 0
    var discarded = false
    /// The budget's wait before the next chunk has been served.
    var paced = false

    init(key: NodeKey, job: Job, file: PoolFileName, ref: FileRef, phase: Phase, chunk: UInt64, bucket: TokenBucket,
         started: Double, pageSize: UInt64) {
        self.key = key
        self.job = job
        self.file = file
        self.ref = ref
        self.phase = phase
        self.chunk = chunk
        self.bucket = bucket
        self.started = started
        self.pageSize = pageSize
    }

    public var isOver: Bool { phase == .over }

    mutating func over() -> Double? {
        phase = .over
        return nil
    }

    /// The wait the budget asks before a chunk of `n` bytes, once per chunk; nil to go on.
    mutating func pace(_ n: UInt64, now: Double) -> Double? {
        if paced {
            paced = false
            return nil
        }
        let wait = bucket.take(Double(n), now: now)
        if wait > 0 {
            paced = true
            return wait
        }
        return nil
    }
}
