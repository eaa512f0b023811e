import Glibc
import PrezeroCore
import PrezeroSys

/// The control requests. Each either does all of its work or, on a bad request,
/// answers with a clear error and changes nothing.
extension PoolDaemon {
    public func handle(_ r: Request) -> Response {
        do throws(ControlError) {
            switch r.op {
            case .status:
                return Response(status: status())
            case .claim:
                guard let c = r.claim else { throw ControlError(.badRequest, "claim: missing \"claim\" object") }
                return Response(claim: try claim(c))
            case .release:
                guard let rel = r.release else { throw ControlError(.badRequest, "release: missing \"release\" object") }
                return Response(release: try release(rel))
            case .fill:
                try setTargets(r.scope ?? PoolScope(), drain: false)
                return Response(status: status())
            case .drain:
                try setTargets(r.scope ?? PoolScope(), drain: true)
                return Response(status: status())
            case .hook:
                guard let h = r.hook else { throw ControlError(.badRequest, "hook: missing \"hook\" object") }
                return Response(hook: try hook(h))
            case .makeRoom:
                guard let m = r.makeRoom else { throw ControlError(.badRequest, "make-room: missing \"make_room\" object") }
                return Response(makeRoom: try makeRoom(m))
            }
        } catch {
            return Response(error: error)
        }
    }

    // MARK: status

    public func status() -> StatusResult {
        let counters = Dictionary(uniqueKeysWithValues: wakeups.keys.map { ($0, nodeCounters($0)) })
        return book.withLock { b in
            let mounts = pools.enumerated().map { mi, pool in
                let nodes = b.nodes.filter { $0.key.mount == mi }.sorted { $0.key.node < $1.key.node }.map { k, nb in
                    var s = nb.stats
                    let c = counters[k]!
                    let ps = pool.mount.pageSize
                    s.totalBytes = c.total
                    s.freeBytes = c.free
                    s.targetBytes = nb.target.resolve(totalBytes: c.total) / ps * ps
                    s.minFreeBytes = keepFree(nb, totalBytes: c.total, pageSize: ps, forFill: false)
                    s.cleanBytes = nb.cleanBytes
                    s.cleanFiles = nb.clean.count
                    s.dirtyBytes = nb.dirty.reduce(0) { $0 + $1.bytes }
                    s.fillingBytes = nb.fillingBytes
                    s.scrubbingBytes = nb.scrubbing.reduce(0) { $0 + $1.bytes }
                    s.leasedBytes = b.leases.values.filter { $0.mount == mi && $0.file.node == k.node }.reduce(0) { $0 + $1.file.bytes }
                    return s
                }
                return MountStatus(path: pool.mount.path, pageSize: pool.mount.pageSize, poolDir: pool.rootPath,
                                   quarantined: b.quarantined[mi], nodes: nodes)
            }
            return StatusResult(pid: getpid(), scrubMethod: zero.rawValue,
                                scrubStrategy: config.scrub.strategy.rawValue, mounts: mounts)
        }
    }

    // MARK: fill and drain

    func setTargets(_ scope: PoolScope, drain: Bool) throws(ControlError) {
        let keys = try nodeKeys(scope)
        book.withLock { b in
            for k in keys {
                if drain {
                    b.nodes[k]?.target = .bytes(0)
                } else if let t = scope.target {
                    b.nodes[k]?.target = t
                }
            }
        }
        if drain {
            for k in keys { giveBack(k, bytes: UInt64.max / 2) }
            logger.info("drain: targets of \(keys.count) node pool(s) set to 0 and their files given back")
        } else {
            logger.info("fill: target \(scope.target.map { "\($0)" } ?? "as configured") on \(keys.count) node pool(s)")
        }
        for k in keys { wake(k) }
    }

    func nodeKeys(_ scope: PoolScope) throws(ControlError) -> [NodeKey] {
        var keys = Array(wakeups.keys)
        if let m = scope.mount {
            guard let mi = pools.firstIndex(where: { $0.mount.path == m }) else {
                throw ControlError(.notFound, "\(m) is not a pool mount; see prezero status for the mounts")
            }
            keys = keys.filter { $0.mount == mi }
        }
        if let n = scope.node {
            keys = keys.filter { $0.node == n }
            guard !keys.isEmpty else { throw ControlError(.notFound, "node \(n) is not a node of this host") }
        }
        return keys
    }

    func mountIndex(pageSize: UInt64?) throws(ControlError) -> Int {
        guard let ps = pageSize else { return 0 }
        guard let mi = pools.firstIndex(where: { $0.mount.pageSize == ps }) else {
            throw ControlError(.noPool, "no pool mount has \(ByteSize.format(ps)) pages; pool mounts: \(pools.map { "\($0.mount.path) (\(ByteSize.format($0.mount.pageSize)))" }.joined(separator: ", "))")
        }
        return mi
    }

    // MARK: claim

    /// Hands out a clean file at `dest` (see `ClaimPolicy`), keeping a second link in `leased/`.
    func claim(_ c: ClaimRequest) throws(ControlError) -> ClaimResult {
        let mi = try mountIndex(pageSize: c.pageSize)
        let pool = pools[mi]
        let ps = pool.mount.pageSize
        guard c.bytes > 0, c.bytes % ps == 0 else {
            throw ControlError(.badRequest, "claim: size \(c.bytes) is not a positive multiple of the page size \(ByteSize.format(ps))")
        }
        guard c.mode & ~0o777 == 0 else { throw ControlError(.badRequest, "claim: mode \(String(c.mode, radix: 8)) has bits beyond 0777") }
        if let key = c.lease, let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "claim: \(why)") }
        for n in c.nodes where book.withLock({ $0.nodes[NodeKey(mount: mi, node: n)] == nil }) {
            throw ControlError(.badRequest, "claim: node \(n) is not a node of this host")
        }
        let counters = Dictionary(uniqueKeysWithValues: wakeups.keys.filter { $0.mount == mi }.map { ($0, nodeCounters($0)) })
        let largest = counters.filter { c.nodes.isEmpty || c.nodes.contains($0.key.node) }.values.map(\.total).max() ?? 0
        guard c.bytes <= largest else {
            throw ControlError(.badRequest, "claim: \(ByteSize.format(c.bytes)) is more than any allowed node has in huge pages (\(ByteSize.format(largest)))")
        }
        let (destDir, destName) = try openDestination(c.dest, pool: pool)
        // Refuse an occupied destination before anything is picked, cut or extended.
        // (link() below stays the atomic check.)
        if (try? Files.status(in: destDir, name: destName)) != nil {
            throw ControlError(.badDestination, "claim: cannot create \(c.dest): something already exists there (a file or a symlink); remove it first")
        }

        // Choose and take the file out of the book under the lock.
        let (key, choice) = try book.withLock { b throws(ControlError) -> (String, ClaimChoice) in
            var key = c.lease ?? ""
            while key.isEmpty || (c.lease == nil && b.leases[key] != nil) { key = "claim-\(b.nextSeq())" }
            guard b.leases[key] == nil else { throw ControlError(.busy, "claim: lease '\(key)' is already in use; release it first or pick another key") }
            b.learned[mi].record(c.bytes)
            let clean = b.nodes.filter { $0.key.mount == mi }.values.flatMap { $0.clean.map(CleanFile.init) }
            var choice = ClaimPolicy.choose(bytes: c.bytes, allowedNodes: Set(c.nodes), from: clean)
            // A partial claim extends on the file's node: only within what may be taken there.
            if choice.outcome == .partial, let f = choice.file {
                let k = NodeKey(mount: mi, node: f.node)
                let cnt = counters[k] ?? (0, 0)
                let keep = b.nodes[k].map { keepFree($0, totalBytes: cnt.total, pageSize: ps, forFill: true) } ?? 0
                if c.bytes - f.bytes > cnt.free - min(cnt.free, keep) { choice = ClaimChoice(outcome: .miss, file: nil) }
            }
            if let f = choice.file {
                let fk = NodeKey(mount: mi, node: f.node)
                b.nodes[fk]?.clean.removeAll { $0 == f.name }
                // Hold the refill back from the moment the file leaves clean/: the node's
                // worker must not start refilling while this claim is still linking it.
                let settle = monotonicSeconds() + Double(config.refillDelayMs) / 1000
                let until = b.nodes[fk]?.fillBackoffUntil ?? 0
                b.nodes[fk]?.fillBackoffUntil = max(until, settle)
                b.leases[key] = Lease(key: key, mount: mi, file: f.name.resized(c.bytes), dest: c.dest, inode: 0, claiming: true)
            }
            return (key, choice)
        }
        guard let picked = choice.file else { return miss(c, mount: mi, key: key) }
        let k = NodeKey(mount: mi, node: picked.node)
        let leased = LeasedName(key: key, file: picked.name.resized(c.bytes)).description
        var outcome = choice.outcome
        do {
            try pool.move(.clean, picked.name.description, to: .leased, leased)
        } catch {
            book.withLock { b in
                b.leases[key] = nil
                b.nodes[k]?.clean.append(picked.name)
            }
            throw ControlError(.system, "claim: \(error)")
        }
        do {
            let fd = try pool.open(.leased, leased)
            switch outcome {
            case .truncated:
                try Files.truncate(fd, to: c.bytes)
            case .partial:
                if !extend(fd, from: picked.bytes, to: c.bytes, node: picked.node) { outcome = .miss }
            case .hit, .miss:
                break
            }
            if outcome == .miss {
                // The extension did not fit on the node: the file goes back, still zero.
                try pool.move(.leased, leased, to: .clean, picked.name.description)
                book.withLock { b in
                    b.leases[key] = nil
                    b.nodes[k]?.clean.append(picked.name)
                }
                return miss(c, mount: mi, key: key)
            }
            try Files.setOwner(fd, uid: c.uid, gid: c.gid, mode: c.mode)
            rememberLeaseDestination(key, c.dest)
            do throws(SysError) {
                try Files.link(in: pool.dir(.leased), leased, to: destDir, destName)
            } catch {
                forgetLeaseDestination(key)
                // Never handed out: back to root and to clean/, still zero.
                try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o600)
                let back = picked.name.resized(c.bytes)
                try pool.move(.leased, leased, to: .clean, back.description)
                book.withLock { b in
                    b.leases[key] = nil
                    b.nodes[k]?.clean.append(back)
                }
                throw ControlError(.badDestination, "claim: cannot create \(c.dest): \(error.errno == EEXIST ? "something already exists there (a file or a symlink); remove it first" : "\(error)")")
            }
            let inode = try Files.status(fd).inode
            book.withLock { b in
                b.leases[key]?.claiming = false
                b.leases[key]?.inode = inode
                b.nodes[k]?.stats.outcomes[outcome.rawValue, default: 0] += 1
                let settle = monotonicSeconds() + Double(config.refillDelayMs) / 1000
                let until = b.nodes[k]?.fillBackoffUntil ?? 0
                b.nodes[k]?.fillBackoffUntil = max(until, settle)
            }
        } catch let e as ControlError {
            throw e
        } catch {
            logger.error("claim of \(picked.name) for lease \(key) failed half-way: \(error)")
            // The reclaimer treats it as any released lease: scrubbed before reuse.
            book.withLock { $0.leases[key]?.claiming = false }
            throw ControlError(.system, "claim: \(error)")
        }
        logger.info("claim \(outcome.rawValue): \(picked.name) -> \(c.dest) (lease \(key), \(ByteSize.format(c.bytes)), node \(picked.node))")
        return ClaimResult(outcome: outcome, path: c.dest, node: picked.node, bytes: c.bytes, pageSize: ps, lease: key)
    }

    /// A miss hands nothing out; it makes room for the caller's own allocation instead,
    /// so that a launch the pool cannot serve never fails for lack of free pages.
    func miss(_ c: ClaimRequest, mount mi: Int, key: String) -> ClaimResult {
        let ps = pools[mi].mount.pageSize
        let node = c.nodes.first ?? book.withLock { b in b.nodes.keys.filter { $0.mount == mi }.map(\.node).min() ?? 0 }
        book.withLock { $0.nodes[NodeKey(mount: mi, node: node)]?.stats.outcomes[ClaimOutcome.miss.rawValue, default: 0] += 1 }
        _ = try? makeRoom(MakeRoomRequest(pageSize: ps, pages: [String(node): c.bytes / ps]))
        logger.info("claim miss: no clean file for \(ByteSize.format(c.bytes)) on nodes \(c.nodes.isEmpty ? "any" : "\(c.nodes)"); made room instead")
        return ClaimResult(outcome: .miss, path: "", node: nil, bytes: c.bytes, pageSize: ps, lease: nil)
    }

    /// Extends a claimed file by fallocate on its own node. On failure the file is
    /// cut back to its old size, so it is still all zero.
    func extend(_ fd: Descriptor, from: UInt64, to: UInt64, node: Int) -> Bool {
        Numa.bindMemory(toNode: node)
        defer { Numa.resetMemoryPolicy() }
        do {
            try Files.allocate(fd, offset: from, length: to - from)
            return true
        } catch {
            logger.info("partial claim could not extend to \(ByteSize.format(to)) on node \(node): \(error)")
            try? Files.punchHole(fd, offset: from, length: to - from)
            try? Files.truncate(fd, to: from)
            return false
        }
    }

    /// Checks a claim destination and opens its parent: an absolute, plain path inside an
    /// allowed directory, on the pool's mount, outside the pool, through no symlink.
    func openDestination(_ dest: String, pool: PoolDirectory) throws(ControlError) -> (Descriptor, String) {
        let parts = dest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard dest.hasPrefix("/"), parts.count >= 3, !parts.dropFirst().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw ControlError(.badDestination, "destination '\(dest)' must be an absolute path with no '.', '..' or empty components")
        }
        let allowed = config.allowedDirs.isEmpty ? pools.map(\.mount.path) : config.allowedDirs
        func inside(_ dir: String) -> Bool {
            let d = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            return dest.hasPrefix(d + "/")
        }
        guard !pools.contains(where: { inside($0.rootPath) }) else {
            throw ControlError(.badDestination, "destination \(dest) is inside a pool directory; pick a path outside \(pool.rootPath)")
        }
        guard allowed.contains(where: inside) else {
            throw ControlError(.badDestination, "destination \(dest) is outside the allowed directories (\(allowed.joined(separator: ", "))); set allowed_dirs in the prezerod config")
        }
        let parent = "/" + parts.dropFirst().dropLast().joined(separator: "/")
        let name = parts.last!
        let dir: Descriptor
        do {
            dir = try Files.openDirectory(path: parent, pathOnly: true)
        } catch {
            let why = error.errno == ELOOP || error.errno == ENOTDIR ? "a component is a symlink or not a directory" : "\(error)"
            throw ControlError(.badDestination, "destination directory \(parent): \(why)")
        }
        let st: FileStatus
        do { st = try Files.status(dir) } catch { throw ControlError(.system, "\(error)") }
        guard !pool.isPoolDirectory(st) else {
            throw ControlError(.badDestination, "destination \(dest) is inside a pool directory; pick a path outside \(pool.rootPath)")
        }
        guard st.device == pool.device.device else {
            throw ControlError(.badDestination, "destination \(dest) is not on the pool mount \(pool.mount.path); a hugetlbfs file can only be linked within its mount")
        }
        return (dir, name)
    }

    // MARK: release

    /// Ends a lease: the destination name is removed, the file is root's again at once,
    /// and it goes to `dirty/` once no process holds it (now, or on a later reclaim pass).
    func release(_ r: ReleaseRequest) throws(ControlError) -> ReleaseResult {
        var lease: Lease
        if let key = r.lease {
            if let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "release: \(why)") }
            guard let l = book.withLock({ $0.leases[key] }) else { throw ControlError(.notFound, "release: no lease '\(key)'") }
            lease = l
        } else if let dest = r.dest {
            guard let l = try leaseAt(dest) else { throw ControlError(.notFound, "release: \(dest) is not a leased pool file") }
            lease = l
            // Found by its inode at this very path: that is the name to remove.
            lease.dest = dest
        } else {
            throw ControlError(.badRequest, "release: give a lease key or a destination path")
        }
        guard !lease.claiming else { throw ControlError(.busy, "release: lease '\(lease.key)' is still being claimed; try again") }
        let pool = pools[lease.mount]
        do {
            let fd = try pool.open(.leased, lease.leasedName)
            try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o600)
            if let dest = lease.dest, let (dir, name) = try? openDestination(dest, pool: pool),
               let st = try Files.status(in: dir, name: name), st.inode == lease.inode {
                try Files.unlink(in: dir, name)
            }
        } catch {
            throw ControlError(.system, "release of lease '\(lease.key)': \(error)")
        }
        logger.info("lease \(lease.key) released")
        // Asked now: scan for its holders now, whatever the back-off said.
        book.withLock { b in b.leases[lease.key]?.nextScan = 0 }
        reclaim()
        let done = book.withLock { $0.leases[lease.key] == nil }
        return ReleaseResult(lease: lease.key, reclaimed: done)
    }

    func leaseAt(_ dest: String) throws(ControlError) -> Lease? {
        for (mi, pool) in pools.enumerated() {
            guard let (dir, name) = try? openDestination(dest, pool: pool) else { continue }
            guard let st = try? Files.status(in: dir, name: name) else { continue }
            if let l = book.withLock({ b in b.leases.values.first { $0.mount == mi && $0.inode == st.inode } }) { return l }
        }
        return nil
    }

    // MARK: lease journal (where each lease's first link went, across restarts)

    func rememberLeaseDestination(_ key: String, _ dest: String) {
        do {
            try Files.writeText("\(leaseJournal)/.\(key).new", dest)
            try Files.renamePath("\(leaseJournal)/.\(key).new", "\(leaseJournal)/\(key)")
        } catch {
            logger.warning("lease journal: \(error)")
        }
    }

    func forgetLeaseDestination(_ key: String) {
        unlink("\(leaseJournal)/\(key)")
    }
}
