import Logging
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// The one executor: it asks `PoolState`'s transitions what to do, performs the
/// effects they return through a `PoolFileSystem`, and settles each operation
/// through the state's commit / compensation. Threads, pinning and pacing stay with
/// the caller; the decisions live in PrezeroCore.
public final class PoolEngine: Sendable {
    let fs: any PoolFileSystem
    /// The pool's state: only this class reads or changes it, others ask the named
    /// queries below.
    private let state: Locked<PoolState>
    let logger: Logger
    let clock: @Sendable () -> Double
    /// Waits (bandwidth budgets, retries after errors). The simulation passes a no-op.
    let pause: @Sendable (Double) -> Void
    /// Tells a node's workers that there is work (a file taken back: fill a new one).
    let wake: @Sendable (NodeKey) -> Void
    /// Leases whose file a release or a take-back is working on: one at a time per lease,
    /// since a release opens the leased file and a take-back holds a write lease on it
    /// (an opener would wait for the lease to go).
    let leaseBusy = Mutex<Set<String>>([])

    /// An engine over `fs`; `clock`, `pause` and `wake` are the host's, or the simulation's.
    public init(fs: any PoolFileSystem, state: PoolState, logger: Logger, clock: @escaping @Sendable () -> Double,
                pause: @escaping @Sendable (Double) -> Void, wake: @escaping @Sendable (NodeKey) -> Void) {
        self.fs = fs
        self.state = Locked(state)
        config = state.config
        self.logger = logger
        self.clock = clock
        self.pause = pause
        self.wake = wake
    }

    /// The daemon's configuration, as the state was made with (it never changes).
    public let config: Config
    public var stopping: Bool { state.withLock { $0.stopping } }
    /// Marks the pool as stopping: each worker's next job is to stop.
    public func stop() { state.withLock { $0.stopping = true } }

    // MARK: named queries
    /// The lease with this key, if any.
    public func lease(_ key: String) -> Lease? { state.withLock { $0.leases[key] } }
    /// The lease whose file is `inode` on mount `mi`, if any: how a release by destination finds its lease.
    public func lease(mount mi: Int, inode: UInt64) -> Lease? { state.withLock { $0.leases.lease(mount: mi, inode: inode) } }
    /// The keys of a libvirt domain's leases (`LeaseKey.group`).
    public func leaseKeys(group: String) -> [String] { state.withLock { $0.leases.keys(group: group) } }
    /// Whether the pool has the node `k` (a mount's node this host has).
    public func hasNode(_ k: NodeKey) -> Bool { state.withLock { $0.nodes[k] != nil } }
    /// The node's free and total huge pages now, from the file system.
    public func counters(_ k: NodeKey) -> NodeCounters { fs.counters(k) }
    /// A copy of the whole state, for status and for the simulation's checks.
    public func snapshot() -> PoolState { state.withLock { $0 } }

    /// Sets the nodes' targets to `target` (nil leaves them), or to 0 for a drain.
    public func setTargets(_ keys: [NodeKey], drain: Bool, target: SizeSpec?) {
        state.withLock { $0.setTargets(keys, drain: drain, target: target) }
    }

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
    public func run(_ op: PoolOp) -> Result<Observed?, Failure> {
        var observed: Observed? = nil
        for (i, e) in op.effects.enumerated() {
            do throws(EffectError) {
                if let o = try fs.perform(e) { observed = o }
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
        state.withLock { $0.commit(op, observed: observed, now: now) }
        return .success(observed)
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
            var journal: [String: LeaseRecord] = [:]
            for f in listing where f.state == .leased {
                if let key = LeasedName(f.name)?.key { journal[key] = fs.journal(key) }
            }
            let ops = state.withLock { $0.recover(mount: mi, listing: listing, journal: { journal[$0] }) }
            for h in fs.heldJournal(mount: mi) {
                state.withLock { $0.restoreHeld(NodeKey(mount: mi, node: h.node), id: h.id, bytes: h.bytes) }
            }
            for op in ops {
                guard case .recover(_, let step) = op else { continue }
                if case .failure(let f) = run(op) {
                    logger.error("recovery: \(step): \(f.error)")
                    continue
                }
                switch step {
                case .giveBack(let from, let name):
                    logger.info("recovery: \(from.rawValue)/\(name) given back to the kernel")
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
    /// A `quota` (a non-root claimant's) is checked against its leases in the same step that
    /// takes the file, so that claims at once cannot pass it together.
    public func claim(_ c: ClaimRequest, mount mi: Int, claimant: UInt32 = 0, quota: UInt64? = nil) throws(ControlError) -> ClaimResult {
        let ps = state.withLock { $0.mounts[mi].pageSize }
        let counters = counters(mount: mi)
        let now = clock()
        let (key, ticket) = try state.withLock { s throws(ControlError) in
            if let quota { try CallerPolicy.checkQuota(leased: s.leasedBytes(claimant: claimant), claim: c.bytes, quota: quota, uid: claimant) }
            return try s.beginClaim(c, mount: mi, counters: counters, now: now, claimant: claimant)
        }
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
            if case .checkSole = f.effect, f.error.errno == EffectError.otherNames {
                let q = state.withLock { $0.quarantineClean(NodeKey(mount: mi, node: t.node), t.picked, reason: "linked elsewhere") }
                run(q)
                logger.critical("clean/\(t.picked) has a name outside the pool; quarantined, never handed out")
                return miss(c, mount: mi)
            }
            if case .link = f.effect {
                if f.error.isPermission {
                    throw ControlError(.forbidden, "claim: uid \(claimant) may not create \(c.dest): permission denied (the link is made as the caller: pick a directory it may write)")
                }
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
    /// and it is taken back if the kernel says no one else has it open (else on a later
    /// reclaim pass). Only this lease's file is looked at: the cost of a release does not
    /// grow with the number of leases.
    public func release(_ lease: Lease) throws(ControlError) -> ReleaseResult {
        guard !lease.claiming else { throw ControlError(.busy, "release: lease '\(lease.key)' is still being claimed; try again") }
        guard waitForLease(lease.key) else {
            throw ControlError(.busy, "release: lease '\(lease.key)' is being taken back by prezerod right now; try again")
        }
        defer { leaseBusy.withLock { _ = $0.remove(lease.key) } }
        if case .failure(let f) = run(.release(lease)) {
            if f.error.errno == EffectError.inUse {
                throw ControlError(.busy, "release: lease '\(lease.key)': its file is under a file lease its holder has not given up yet (the kernel is breaking it); try again")
            }
            throw ControlError(.system, "release of lease '\(lease.key)': \(f.error)")
        }
        logger.info("lease \(lease.key) released")
        if let l = self.lease(lease.key) { takeBackIfEnded(l, now: clock()) }
        return ReleaseResult(lease: lease.key, reclaimed: self.lease(lease.key) == nil)
    }

    /// Marks a lease busy, waiting (a few seconds at most) while a take-back of it runs.
    func waitForLease(_ key: String) -> Bool {
        for _ in 0..<5000 {
            if leaseBusy.withLock({ $0.insert(key).inserted }) { return true }
            pause(0.001)
        }
        return false
    }

    /// Takes back the file of every lease that has ended (released, or its destination
    /// name gone) and that the kernel says no one else has open: its pages are punched
    /// out and the inode let go (`Effect.takeBack`). A file still open stays leased and
    /// is asked for again later. The monitor calls it; a lease a release is working on is
    /// left to that release.
    public func reclaim() {
        let now = clock()
        for l in state.withLock({ $0.reclaimCandidates(now: now) }) {
            guard leaseBusy.withLock({ $0.insert(l.key).inserted }) else { continue }
            defer { leaseBusy.withLock { _ = $0.remove(l.key) } }
            // The candidate list is a snapshot: a release may have changed the lease since.
            guard let current = state.withLock({ $0.leases[l.key] }), !current.claiming else { continue }
            takeBackIfEnded(current, now: now)
        }
    }

    /// One lease: if it has ended and nothing else has its file open, the file is taken back.
    func takeBackIfEnded(_ l: Lease, now: Double) {
        let info: FileInfo
        do throws(EffectError) {
            guard let i = try fs.status(l.ref) else {
                logger.error("lease \(l.key): leased/\(l.leasedName) is gone")
                state.withLock { $0.leaseVanished(l) }
                return
            }
            info = i
        } catch {
            logger.error("reclaim of lease \(l.key): \(error)")
            return
        }
        let dest = !l.released && info.links > 1 ? l.dest.flatMap { fs.destinationInode($0, mount: l.mount) } : nil
        guard state.withLock({ $0.leaseEnded(l, file: info, destination: dest) }) else { return }
        let began = clock()
        let result = run(.recycle(l))
        let ms = ((clock() - began) * 100_000).rounded() / 100
        switch result {
        case .failure(let f) where f.error.errno == EffectError.inUse:
            logger.debug("lease \(l.key) ended but its file is still open somewhere (a descriptor, a mapping, a descriptor in flight, io_uring); asked again later")
            state.withLock { $0.leaseHeld(l.key, now: now) }
        case .failure(let f):
            logger.error("take-back of lease \(l.key) failed: \(f.error)")
            state.withLock { $0.leaseHeld(l.key, now: now) }
        case .success(let o):
            guard case .tookBack(let tb)? = o else { return }
            journal(.journal(lease: l.key, destination: nil))
            journal(l.heldRecord(tb.held > 0 ? tb.held : nil))
            logger.info("lease \(l.key) taken back in \(ms) ms (write lease, punch, unlink): \(ByteSize.format(tb.bytes - min(tb.bytes, tb.held))) to the kernel")
            if tb.held > 0 {
                logger.warning("lease \(l.key): \(ByteSize.format(tb.held)) stayed pinned outside the pool after the punch (an io_uring buffer, a pipe); counted as held outside the pool, never reused")
            }
            if tb.extraLinks > 0 {
                let where_ = tb.names.isEmpty ? "not found on the mount" : tb.names.joined(separator: ", ")
                logger.warning("lease \(l.key): its file had \(tb.extraLinks) name(s) outside the pool (\(where_)); taken back all the same, the name now leads to an empty root-only file")
            }
            wake(NodeKey(mount: l.mount, node: l.file.node))
        }
    }

    /// Pages pinned outside the pool come back unseen when their pinner lets go: each
    /// node with held pages compares them with what it uses outside the pool's files
    /// (see `PoolState.settleHeld`).
    public func settleHeld() {
        let held = state.withLock { s in s.nodes.filter { !$0.value.held.isEmpty }.map(\.key) }
        for k in held {
            let files = state.withLock { s in
                s.knownFiles(mount: k.mount).filter { PoolFileName(entry: $0.name)?.node == k.node }
            }
            let u = fs.usage(k, files: files)
            for c in state.withLock({ $0.settleHeld(k, outsideUse: u.inUse - min(u.inUse, u.inFiles)) }) {
                journal(.journalHeld(id: c.held.id, mount: k.mount, node: k.node, bytes: c.bytes))
                logger.info("lease \(c.held.lease): pages held outside the pool on node \(k.node) came back to the kernel; \(ByteSize.format(c.bytes ?? 0)) still held")
            }
        }
    }

    /// A journal write whose failure costs only what a restart remembers: logged, not fatal.
    func journal(_ e: Effect) {
        do throws(EffectError) {
            _ = try fs.perform(e)
        } catch {
            logger.warning("journal: \(error)")
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

    // MARK: what the job runner asks and tells (see `JobRunner`)
    func nextJob(_ k: NodeKey, counters c: NodeCounters) -> Job? { let now = clock(); return state.withLock { $0.nextJob(k, counters: c, now: now) } }
    func pageSize(_ k: NodeKey) -> UInt64 { state.withLock { $0.pageSize(k) } }
    /// Whether a fill may take its next chunk on the node (its target, what must stay free).
    func fillMayAllocate(_ k: NodeKey, counters c: NodeCounters, chunk: UInt64) -> Bool {
        let now = clock()
        return state.withLock { $0.fillMayAllocate(k, counters: c, chunk: chunk, now: now) }
    }
    func fillAllocated(_ k: NodeKey, _ f: PoolFileName, chunk: UInt64, done: UInt64?) { state.withLock { $0.fillAllocated(k, f, chunk: chunk, done: done) } }
    func fillBackOff(_ k: NodeKey) { let now = clock(); state.withLock { $0.fillBackOff(k, now: now) } }
}
