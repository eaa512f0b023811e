import Glibc
import PrezeroCore
import PrezeroSys

/// Giving pages back (min_free, make-room, drain) and reclaiming released leases.
extension PoolDaemon {
    func monitorLoop() {
        var lastReclaim = 0.0
        while !stopping {
            for k in wakeups.keys {
                yieldIfShort(k)
                trimToTarget(k)
            }
            let now = monotonicSeconds()
            if now - lastReclaim >= Double(config.reclaimIntervalMs) / 1000 {
                reclaim()
                lastReclaim = now
            }
            sleepSeconds(Double(config.monitorIntervalMs) / 1000)
        }
    }

    /// When a node's free pages fall below what must stay free, give pages back at once.
    func yieldIfShort(_ k: NodeKey) {
        let ps = pools[k.mount].mount.pageSize
        let c = nodeCounters(k)
        let keep = book.withLock { b in b.nodes[k].map { keepFree($0, totalBytes: c.total, pageSize: ps, forFill: false) } ?? 0 }
        guard c.free < keep else { return }
        let freed = giveBack(k, bytes: keep - c.free)
        if freed > 0 {
            logger.info("yielded \(ByteSize.format(freed)) on node \(k.node) of \(pools[k.mount].mount.path): free pages fell below what must stay free")
        }
    }

    /// A pool over its target (a lowered target, a drain, or a scrubbed file coming
    /// back) gives the excess back, so the pool never holds more than asked.
    func trimToTarget(_ k: NodeKey) {
        let ps = pools[k.mount].mount.pageSize
        let total = nodeCounters(k).total
        let excess = book.withLock { b -> UInt64 in
            guard let nb = b.nodes[k] else { return 0 }
            let target = nb.target.resolve(totalBytes: total) / ps * ps
            let held = nb.cleanBytes + nb.dirty.reduce(0) { $0 + $1.bytes }
            return held > target ? held - target : 0
        }
        if excess > 0 { giveBack(k, bytes: excess) }
    }

    /// Gives up to `bytes` back to the kernel on one node: dirty files first (their
    /// content is of no use until scrubbed), then clean ones, smallest first.
    /// Returns the bytes given back.
    @discardableResult
    func giveBack(_ k: NodeKey, bytes: UInt64) -> UInt64 {
        let pool = pools[k.mount]
        let ps = pool.mount.pageSize
        // Take the files out of the book first, so that no claim or worker can use them.
        let (dirty, steps) = book.withLock { b -> ([PoolFileName], [YieldPlanner.Step]) in
            guard var nb = b.nodes[k] else { return ([], []) }
            defer { b.nodes[k] = nb }
            var need = ByteSize.roundUp(bytes, to: ps)
            var dirty: [PoolFileName] = []
            while need > 0, !nb.dirty.isEmpty {
                let f = nb.dirty.removeLast()
                dirty.append(f)
                need -= min(need, f.bytes)
            }
            let steps = YieldPlanner.plan(needBytes: need, clean: nb.clean, pageSize: ps)
            let taken = Set(steps.map(\.file))
            nb.clean.removeAll { taken.contains($0) }
            return (dirty, steps)
        }
        var freed: UInt64 = 0
        for f in dirty {
            do {
                try pool.unlink(.dirty, f.description)
                freed += f.bytes
            } catch {
                logger.error("give-back of dirty/\(f) failed: \(error)")
                book.withLock { $0.nodes[k]?.dirty.append(f) }
            }
        }
        for s in steps {
            do {
                if s.keepBytes == 0 {
                    try pool.unlink(.clean, s.file.description)
                } else {
                    let fd = try pool.open(.clean, s.file.description)
                    try Files.truncate(fd, to: s.keepBytes)
                    let kept = s.file.resized(s.keepBytes)
                    try pool.move(.clean, s.file.description, to: .clean, kept.description)
                    book.withLock { $0.nodes[k]?.clean.append(kept) }
                }
                freed += s.file.bytes - s.keepBytes
            } catch {
                logger.error("give-back of clean/\(s.file) failed: \(error)")
                book.withLock { $0.nodes[k]?.clean.append(s.file) }
            }
        }
        book.withLock { $0.nodes[k]?.stats.yieldedBytes += freed }
        return freed
    }

    /// Moves every lease whose destination name is gone (released, or its VMM's
    /// directory removed) and that no process holds any more from `leased/` to `dirty/`.
    /// One pass at a time: `release` and the monitor both call it.
    func reclaim() {
        reclaimLock.withLock { _ in
            let now = monotonicSeconds()
            let candidates = book.withLock { b in b.leases.values.filter { !$0.claiming && $0.nextScan <= now } }
            for (mi, pool) in pools.enumerated() {
                let ending = endingLeases(candidates.filter { $0.mount == mi }, pool: pool)
                guard !ending.isEmpty else { continue }
                let holders = pool.holders()
                if !holders.complete {
                    logger.warning("reclaim: some processes could not be read in /proc; their leases stay leased")
                }
                for (lease, st) in ending {
                    guard holders.isFree(pool.fileID(st)) else {
                        book.withLock { b in
                            guard var l = b.leases[lease.key] else { return }
                            l.nextScan = now + min(Double(config.reclaimIntervalMs) / 1000 * Double(1 << min(l.heldScans, 10)), 10)
                            l.heldScans += 1
                            b.leases[lease.key] = l
                        }
                        continue
                    }
                    do {
                        try reclaimLease(lease, pool: pool)
                    } catch {
                        logger.error("reclaim of lease \(lease.key) failed: \(error)")
                    }
                }
            }
        }
    }

    /// Leases with one link left, made root-only before any holder scan, so that the
    /// former owner cannot open the file again after the scan has looked.
    private func endingLeases(_ leases: [Lease], pool: PoolDirectory) -> [(Lease, FileStatus)] {
        var out: [(Lease, FileStatus)] = []
        for lease in leases {
            do {
                guard let st = try Files.status(in: pool.dir(.leased), name: lease.leasedName) else {
                    logger.error("lease \(lease.key): leased/\(lease.leasedName) is gone")
                    book.withLock { b in
                        if b.leases[lease.key]?.leasedName == lease.leasedName { b.leases[lease.key] = nil }
                    }
                    continue
                }
                guard st.links == 1 else { continue }
                if st.uid != 0 || st.gid != 0 || st.permissions != 0o600 {
                    let fd = try pool.open(.leased, lease.leasedName)
                    try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o600)
                }
                out.append((lease, st))
            } catch {
                logger.error("reclaim of lease \(lease.key): \(error)")
            }
        }
        return out
    }

    /// The file is ours alone again: cut back to the size handed out (a holder may have
    /// grown it), then dirty, then scrubbed by its node's worker.
    func reclaimLease(_ lease: Lease, pool: PoolDirectory) throws {
        let size: UInt64
        do {
            let fd = try pool.open(.leased, lease.leasedName)
            try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o600)
            if try Files.status(fd).size > lease.file.bytes { try Files.truncate(fd, to: lease.file.bytes) }
            size = try Files.status(fd).size
        }
        let dirtyName = lease.file.resized(size)
        try pool.move(.leased, lease.leasedName, to: .dirty, dirtyName.description)
        let k = NodeKey(mount: lease.mount, node: lease.file.node)
        book.withLock { b in
            if b.leases[lease.key]?.leasedName == lease.leasedName { b.leases[lease.key] = nil }
            b.nodes[k]?.dirty.append(dirtyName)
        }
        forgetLeaseDestination(lease.key)
        logger.info("lease \(lease.key) reclaimed: \(dirtyName) queued for scrubbing")
        wake(k)
    }

    /// Frees pages on each node until it has the requested number free, and keeps
    /// them free for `make_room_hold_s` so the launch that asked can take them.
    func makeRoom(_ r: MakeRoomRequest) throws(ControlError) -> MakeRoomResult {
        let mi = try mountIndex(pageSize: r.pageSize)
        let ps = pools[mi].mount.pageSize
        // Check the whole request before anything changes.
        var wants: [(String, NodeKey, UInt64)] = []
        for (nodeText, pages) in r.pages.sorted(by: { $0.key < $1.key }) {
            guard let node = Int(nodeText), book.withLock({ $0.nodes[NodeKey(mount: mi, node: node)] != nil }) else {
                throw ControlError(.badRequest, "make-room: node '\(nodeText)' is not a node of this host")
            }
            let k = NodeKey(mount: mi, node: node)
            let total = nodeCounters(k).total / ps
            guard pages <= total else {
                throw ControlError(.badRequest, "make-room: node \(node) has \(total) pages of \(ByteSize.format(ps)) in all; \(pages) cannot be made free")
            }
            wants.append((nodeText, k, pages))
        }
        var freed: [String: UInt64] = [:]
        var free: [String: UInt64] = [:]
        for (nodeText, k, pages) in wants {
            book.withLock { b in
                b.nodes[k]?.holdPages = pages
                b.nodes[k]?.holdUntil = monotonicSeconds() + Double(config.makeRoomHoldS)
            }
            let have = nodeCounters(k).free
            let want = pages * ps
            let got = want > have ? giveBack(k, bytes: want - have) : 0
            freed[nodeText] = got / ps
            free[nodeText] = nodeCounters(k).free / ps
            logger.info("make-room: node \(k.node) needs \(pages) pages, gave back \(got / ps), \(free[nodeText]!) free")
        }
        return MakeRoomResult(freed: freed, free: free)
    }
}
