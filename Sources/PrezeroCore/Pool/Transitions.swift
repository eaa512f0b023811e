import PrezeroProtocol

/// Work a node worker picks up.
public enum Job: Sendable, Equatable {
    case fill(PoolFileName, resume: Bool)
    case stop
}

/// The pool's transitions. Each decides from the state and the observations it is
/// given (counters, listings, holders, the clock), changes the state, and returns
/// the `PoolOp` whose effects the caller performs.
extension PoolState {
    // MARK: jobs

    /// The next job of one of a node's workers: finish cut-short fills, then fill toward the
    /// target. Several workers fill at once, each its own file: the files already being filled
    /// count at their planned size, and their pages still to come are not free for another.
    /// A released lease's file is never refilled or reused: the pool fills a new one.
    public mutating func nextJob(_ k: NodeKey, counters c: NodeCounters, now: Double) -> Job? {
        if stopping { return .stop }
        guard var nb = nodes[k] else { return .stop }
        defer { nodes[k] = nb }
        if !nb.resume.isEmpty {
            let f = nb.resume.removeFirst()
            nb.startFill(f, now: now)
            return .fill(f, resume: true)
        }
        let settling = now < nb.fillBackoffUntil
        guard now >= nb.noPagesUntil, !settling || nb.owedRefill > 0 else { return nil }
        let ps = pageSize(k)
        guard let size = FillPlanner.next(
            target: target(k, totalBytes: c.total), held: nb.cleanBytes + nb.fillingPlannedBytes,
            cleanSizes: nb.clean.map(\.bytes), learned: mounts[k.mount].learned.sizes, fileSize: nb.fileSize,
            freeBytes: c.free - min(c.free, nb.fillingOutstandingBytes), keepFree: keepFree(k, totalBytes: c.total, forFill: true, now: now), pageSize: ps)
        else { return nil }
        let f = PoolFileName(node: k.node, bytes: size, seq: nextSeq())
        nb.startFill(f, now: now)
        nb.owedRefill -= min(nb.owedRefill, size)
        return .fill(f, resume: false)
    }

    /// May a fill allocate its next chunk? Not on shutdown, at or over a lowered target (a drain's
    /// 0 included: a fill woken just before it must not take its first chunk after), or when the
    /// pages are needed by others. A planned fill always has room below its target (planning keeps
    /// clean + planned within it), so the check is strict. Yes sets the chunk aside (`allocating`)
    /// until `fillAllocated`, so that the node's other fills, checking meanwhile, leave room for it.
    public mutating func fillMayAllocate(_ k: NodeKey, counters c: NodeCounters, chunk: UInt64, now: Double) -> Bool {
        guard !stopping, let nb = nodes[k] else { return false }
        let keep = keepFree(k, totalBytes: c.total, forFill: true, now: now)
        guard nb.cleanBytes + nb.fillingBytes < target(k, totalBytes: c.total), c.free >= keep + chunk + nb.allocating else { return false }
        nodes[k]?.allocating += chunk
        return true
    }

    /// A chunk's allocation is over (`got`: what the file holds now; nil: it failed).
    public mutating func fillAllocated(_ k: NodeKey, _ f: PoolFileName, chunk: UInt64, done: UInt64?) {
        guard let nb = nodes[k] else { return }
        nodes[k]?.allocating = nb.allocating - min(nb.allocating, chunk)
        if let done, nb.filling[f] != nil { nodes[k]?.filling[f] = done }
    }

    /// A fill that got no page at all waits a second before the next try.
    public mutating func fillBackOff(_ k: NodeKey, now: Double) {
        nodes[k]?.noPagesUntil = now + 1
    }

    // MARK: claim

    /// Picks a clean file for a checked claim and takes it out of `clean/` in the state;
    /// nil is a miss. The refill of its node is held back from this moment: the worker
    /// must not start refilling while the claim is still linking the file.
    public mutating func beginClaim(_ c: ClaimRequest, mount mi: Int, counters: [NodeKey: NodeCounters], now: Double,
                                    claimant: UInt32 = 0) throws(ControlError) -> (key: String, ticket: ClaimTicket?) {
        var key = c.lease ?? ""
        while key.isEmpty || (c.lease == nil && leases[key] != nil) { key = "claim-\(nextSeq())" }
        guard leases[key] == nil else {
            throw ControlError(.busy, "claim: lease '\(key)' is already in use; release it first or pick another key")
        }
        mounts[mi].learned.record(c.bytes)
        let clean = nodes.filter { $0.key.mount == mi }.values.flatMap { $0.clean.map(CleanFile.init) }
        var choice = ClaimPolicy.choose(bytes: c.bytes, allowedNodes: Set(c.nodes), from: clean)
        // A partial claim extends on the file's node: only within what may be taken there.
        if choice.outcome == .partial, let f = choice.file {
            let k = NodeKey(mount: mi, node: f.node)
            let cnt = counters[k] ?? NodeCounters(free: 0, total: 0)
            let keep = keepFree(k, totalBytes: cnt.total, forFill: true, now: now)
            if c.bytes - f.bytes > cnt.free - min(cnt.free, keep) { choice = ClaimChoice(outcome: .miss, file: nil) }
        }
        guard let f = choice.file else { return (key, nil) }
        let t = ClaimTicket(key: key, mount: mi, picked: f.name, outcome: choice.outcome, request: c, claimant: claimant)
        let k = NodeKey(mount: mi, node: f.node)
        nodes[k]?.clean.removeAll { $0 == f.name }
        settleRefill(k, now: now)
        leases[key] = Lease(key: key, mount: mi, file: t.handedOut, dest: c.dest, inode: 0, claiming: true, claimant: claimant)
        return (key, t)
    }

    mutating func settleRefill(_ k: NodeKey, now: Double) {
        let settle = now + Double(config.refillDelayMs) / 1000
        let until = nodes[k]?.fillBackoffUntil ?? 0
        nodes[k]?.fillBackoffUntil = max(until, settle)
    }

    /// Counts a miss on the node it was asked for (or the mount's first).
    public mutating func countMiss(_ c: ClaimRequest, mount mi: Int) -> Int {
        let node = c.nodes.first ?? nodes.keys.filter { $0.mount == mi }.map(\.node).min() ?? 0
        nodes[NodeKey(mount: mi, node: node)]?.stats.outcomes[.miss, default: 0] += 1
        return node
    }

    // MARK: release and reclaim

    /// Leases the reclaimer may look at now.
    public func reclaimCandidates(now: Double) -> [Lease] {
        leases.values.filter { !$0.claiming && $0.nextScan <= now }.sorted { $0.key < $1.key }
    }

    /// Has a lease ended? Released by a request; or its file has only its `leased/` name
    /// left; or its destination no longer names its file (`destination`: the inode found
    /// there, nil when nothing is). A name the tenant made elsewhere keeps no lease alive:
    /// the file is taken back all the same, and the name reported.
    public func leaseEnded(_ l: Lease, file: FileInfo, destination: UInt64?) -> Bool {
        if l.released || file.links <= 1 { return true }
        guard l.dest != nil else { return false }  // nowhere known to look: live while it has names
        return destination != file.inode
    }

    /// An ended lease still held open: asked for again later, backing off while it stays held.
    public mutating func leaseHeld(_ key: String, now: Double) {
        guard var l = leases[key] else { return }
        l.nextScan = now + min(Double(config.reclaimIntervalMs) / 1000 * Double(1 << min(l.heldScans, 10)), 10)
        l.heldScans += 1
        leases[key] = l
    }

    /// `leased/<name>` is gone (an operator removed it): the lease is forgotten.
    public mutating func leaseVanished(_ l: Lease) {
        if leases[l.key]?.leasedName == l.leasedName { leases[l.key] = nil }
    }

    // MARK: give-back, make-room, trim

    /// Takes files worth `bytes` out of the state on one node, for giving back to the kernel:
    /// fills cut short by a crash first (they wait for their worker), then clean ones,
    /// smallest first.
    public mutating func beginGiveBack(_ k: NodeKey, bytes: UInt64) -> [PoolOp] {
        guard var nb = nodes[k] else { return [] }
        defer { nodes[k] = nb }
        let ps = pageSize(k)
        let need = ByteSize.roundUp(bytes, to: ps)
        var ops: [PoolOp] = []
        // How much of its size a cut-short fill got is not known here: none is counted.
        while need > 0, !nb.resume.isEmpty {
            ops.append(.giveBackResume(k, nb.resume.removeLast()))
        }
        let steps = YieldPlanner.plan(needBytes: need, clean: nb.clean, pageSize: ps)
        let taken = Set(steps.map(\.file))
        nb.clean.removeAll { taken.contains($0) }
        return ops + steps.map { .giveBackClean(k, $0.file, keep: $0.keepBytes) }
    }

    /// Bytes to give back now because the node's free pages fell below what must stay free.
    public func shortfall(_ k: NodeKey, counters c: NodeCounters, now: Double) -> UInt64 {
        let keep = keepFree(k, totalBytes: c.total, forFill: false, now: now)
        return c.free < keep ? keep - c.free : 0
    }

    /// Bytes over the target (a lowered target, or a drain).
    public func excess(_ k: NodeKey, totalBytes: UInt64) -> UInt64 {
        guard let nb = nodes[k] else { return 0 }
        let held = nb.cleanBytes
        let t = target(k, totalBytes: totalBytes)
        return held > t ? held - t : 0
    }

    /// Checks a make-room request whole before anything changes, and returns per node the pages wanted.
    public func checkMakeRoom(_ r: MakeRoomRequest, mount mi: Int,
                              counters: [NodeKey: NodeCounters]) throws(ControlError) -> [(String, NodeKey, UInt64)] {
        let ps = mounts[mi].pageSize
        var wants: [(String, NodeKey, UInt64)] = []
        for (nodeText, pages) in r.pages.sorted(by: { $0.key < $1.key }) {
            guard let node = Int(nodeText), nodes[NodeKey(mount: mi, node: node)] != nil else {
                throw ControlError(.badRequest, "make-room: node '\(nodeText)' is not a node of this host")
            }
            let k = NodeKey(mount: mi, node: node)
            let total = (counters[k]?.total ?? 0) / ps
            guard pages <= total else {
                throw ControlError(.badRequest, "make-room: node \(node) has \(total) pages of \(ByteSize.format(ps)) in all; \(pages) cannot be made free")
            }
            wants.append((nodeText, k, pages))
        }
        return wants
    }

    /// Holds `pages` free on a node for `make_room_hold_s`, and says how many bytes to give
    /// back for them, from that node's own free pages.
    public mutating func makeRoom(_ k: NodeKey, pages: UInt64, counters c: NodeCounters, now: Double) -> UInt64 {
        nodes[k]?.holdPages = pages
        nodes[k]?.holdUntil = now + Double(config.makeRoomHoldS)
        let have = c.free
        let want = pages * pageSize(k)
        return want > have ? want - have : 0
    }

    /// make-room for a guest bound to no node: pages free host-wide, given back from the
    /// nodes whose pools hold the most; fills keep out of them on every node meanwhile.
    /// Returns the bytes still to free and the nodes to free them on, in order.
    public mutating func makeRoomAnywhere(mount mi: Int, pages: UInt64, counters: [NodeKey: NodeCounters],
                                          now: Double) -> (need: UInt64, nodes: [NodeKey]) {
        let want = pages * mounts[mi].pageSize
        let free = counters.filter { $0.key.mount == mi }.values.reduce(0) { $0 + $1.free }
        let keys = nodes.filter { $0.key.mount == mi }.sorted { ($0.value.cleanBytes, $1.key) > ($1.value.cleanBytes, $0.key) }.map(\.key)
        for k in keys {
            nodes[k]?.holdPages = pages
            nodes[k]?.holdUntil = now + Double(config.makeRoomHoldS)
        }
        return (want - min(want, free), keys)
    }

    /// Pages pinned outside the pool come back to the kernel when their pinner lets go,
    /// unseen: no file is left to look at. What the node uses outside the pool's own files
    /// (`outsideUse`: its pages in use less the pages of every pool file on it) bounds what
    /// can still be pinned; held entries beyond it are over, oldest first. While other
    /// programs use huge pages on the node, the bound is theirs too, so held pages may be
    /// reported a while after they came back: never the other way round.
    /// Returns the entries that changed (nil bytes: gone), for the journal.
    public mutating func settleHeld(_ k: NodeKey, outsideUse: UInt64) -> [(held: HeldPages, bytes: UInt64?)] {
        guard var nb = nodes[k], nb.heldBytes > outsideUse else { return [] }
        var back = nb.heldBytes - outsideUse
        var changed: [(held: HeldPages, bytes: UInt64?)] = []
        while back > 0, !nb.held.isEmpty {
            let take = min(back, nb.held[0].bytes)
            nb.held[0].bytes -= take
            back -= take
            changed.append((nb.held[0], nb.held[0].bytes == 0 ? nil : nb.held[0].bytes))
            if nb.held[0].bytes == 0 { nb.held.removeFirst() }
        }
        nodes[k] = nb
        return changed
    }

    /// Held pages journalled before a restart (see `Effect.journalHeld`), by `Lease.heldID`.
    public mutating func restoreHeld(_ k: NodeKey, id: String, bytes: UInt64) {
        guard bytes > 0, nodes[k] != nil else { return }
        let lease = id.split(separator: "~").first.map(String.init) ?? id
        nodes[k]?.held.removeAll { $0.id == id }
        nodes[k]?.held.append(HeldPages(id: id, lease: lease, bytes: bytes))
    }

    /// Fill sets targets, or with no target of its own goes back to the configured one (so
    /// that `prezero fill` after a drain refills); drain sets them to 0 (and the caller gives
    /// everything back).
    public mutating func setTargets(_ keys: [NodeKey], drain: Bool, target: SizeSpec?) {
        for k in keys {
            guard let n = nodes[k] else { continue }
            nodes[k]?.target = drain ? .bytes(0) : target ?? n.configuredTarget
        }
    }

    // MARK: recovery

    /// Rebuilds the state of one mount from its listing alone (see `Recovery`), with
    /// `journal` giving each lease's destination and claimant (root's when it has no record).
    /// Files from nodes this host does not have are quarantined: their pages cannot be placed right.
    public mutating func recover(mount mi: Int, listing: [ListedFile], journal: (String) -> LeaseRecord?) -> [PoolOp] {
        for f in listing {
            if let n = PoolFileName(entry: f.name) { seq = max(seq, n.seq) }
        }
        let inodes = Dictionary(listing.map { (FileRef(mi, $0.state, $0.name), $0.inode) }, uniquingKeysWith: { a, _ in a })
        func step(_ a: RecoveryAction) -> RecoveryStep {
            func unknownNode(_ state: FileState, _ name: String) -> RecoveryStep? {
                guard let f = PoolFileName(name), nodes[NodeKey(mount: mi, node: f.node)] == nil else { return nil }
                return .quarantine(state, name: name, as: quarantineName(state, name), reason: "node \(f.node) is not on this host")
            }
            switch a {
            case .keep(.quarantine, _):
                return .countQuarantined
            case .keep(.leased, let name):
                guard let ln = LeasedName(name) else { return .countQuarantined }
                let record = journal(ln.key)
                return .adoptLease(Lease(key: ln.key, mount: mi, file: ln.file, dest: record?.dest,
                                         inode: inodes[FileRef(mi, .leased, name)] ?? 0, claiming: false, claimant: record?.claimant ?? 0))
            case .keep(let state, let name):
                if let q = unknownNode(state, name) { return q }
                guard let f = PoolFileName(name) else { return .countQuarantined }
                return .adopt(state, f)
            case .giveBack(let state, let name):
                return .giveBack(state, name: name)
            case .resumeFill(let name):
                if let q = unknownNode(.filling, name) { return q }
                guard let f = PoolFileName(name) else { return .countQuarantined }
                return .adopt(.filling, f)
            case .quarantine(let state, let name, let reason):
                return .quarantine(state, name: name, as: quarantineName(state, name), reason: reason)
            }
        }
        return Recovery.plan(listing).map { .recover(mount: mi, step($0)) }
    }

    /// Sets a clean file aside for good (it has a name outside the pool): out of clean/ in
    /// the state, and the op that moves it to quarantine/.
    public mutating func quarantineClean(_ k: NodeKey, _ f: PoolFileName, reason: String) -> PoolOp {
        nodes[k]?.clean.removeAll { $0 == f }
        return .recover(mount: k.mount, .quarantine(.clean, name: f.description, as: quarantineName(.clean, f.description), reason: reason))
    }

    /// A unique, safe name under quarantine/; the only way out of quarantine is an operator.
    mutating func quarantineName(_ s: FileState, _ name: String) -> String {
        let safe = String(name.unicodeScalars.map { c -> Character in
            (c.isASCII && (c.properties.isAlphabetic || c.properties.numericType != nil || c == "-" || c == "_" || c == "."))
                ? Character(c) : "_"
        }).prefix(100)
        return "\(s.rawValue)-\(nextSeq())-\(safe.isEmpty ? "x" : String(safe))"
    }
}
