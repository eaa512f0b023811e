import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

/// The control requests. Each either does all of its work or, on a bad request,
/// answers with a clear error and changes nothing. A caller other than root may only
/// claim (its own files, within its quota), release its own leases, and ask status
/// (see `CallerPolicy`).
extension PoolDaemon {
    /// Answers one request from `caller`: an operation it may not ask for, or any failure, is an error answer.
    public func handle(_ r: Request, from caller: Caller = .root) -> Response {
        let res = answer(r, from: caller)
        switch res {
        case .error: refusals.withLock { $0.refused[r.operation.rawValue, default: 0] += 1 }
        case .hook(let h) where !h.failed.isEmpty: refusals.withLock { $0.failedHandovers += UInt64(h.failed.count) }
        default: break
        }
        return res
    }

    func answer(_ r: Request, from caller: Caller) -> Response {
        do throws(ControlError) {
            try CallerPolicy.check(r.operation, by: caller)
            switch r {
            case .status:
                return .status(status(for: caller))
            case .claim(let c):
                return .claim(try claim(c, by: caller))
            case .release(let rel):
                return .release(try release(rel, by: caller))
            case .fill(let scope):
                try setTargets(scope, drain: false)
                return .status(status())
            case .drain(let scope):
                try setTargets(scope, drain: true)
                return .status(status())
            case .hook(let h):
                guard let hooks else {
                    throw ControlError(.badRequest, "hook: this daemon takes no libvirt hook calls (it was started without a hook handler); point the hook at prezerod's socket")
                }
                return .hook(try hooks.hook(h, daemon: self))
            case .makeRoom(let m):
                return .makeRoom(try makeRoom(m))
            }
        } catch {
            return .error(error)
        }
    }

    // MARK: status

    /// The pool's status. The names a taken-back file had outside the pool are paths in its
    /// tenant's directories: a caller other than root sees only those of its own leases.
    public func status(for caller: Caller = .root) -> StatusResult {
        let counters = Dictionary(uniqueKeysWithValues: wakeups.keys.map { ($0, engine.counters($0)) })
        let now = monotonicSeconds()
        let b = engine.snapshot()
        let mounts = pools.enumerated().map { mi, pool in
            let nodes = b.nodes.filter { $0.key.mount == mi }.sorted { $0.key.node < $1.key.node }.map { k, nb in
                var s = nb.stats
                let c = counters[k]!
                s.totalBytes = c.total
                s.freeBytes = c.free
                s.targetBytes = b.target(k, totalBytes: c.total)
                s.minFreeBytes = b.keepFree(k, totalBytes: c.total, forFill: false, now: now)
                s.keptForLaunchBytes = b.keepFree(k, totalBytes: c.total, forFill: true, now: now) - s.minFreeBytes
                s.cleanBytes = nb.cleanBytes
                s.cleanFiles = nb.clean.count
                // With the chunk being allocated now: a drain waits for it (a fill's one chunk may be
                // the whole file, and its pages are taken before fallocate returns).
                s.fillingBytes = nb.fillingBytes + nb.allocating
                s.heldBytes = nb.heldBytes
                let leased = b.leases.values.filter { $0.mount == mi && $0.file.node == k.node }
                s.leasedBytes = leased.reduce(0) { $0 + $1.file.bytes }
                s.releasingBytes = leased.filter(\.released).reduce(0) { $0 + $1.file.bytes }
                return s
            }
            let leases = b.leases.values.filter { $0.mount == mi }.sorted { $0.key < $1.key }
                .map { LeaseStatus(lease: $0.key, node: $0.file.node, bytes: $0.file.bytes) }
            let held = b.nodes.filter { $0.key.mount == mi }.sorted { $0.key < $1.key }
                .flatMap { k, nb in nb.held.map { HeldStatus(lease: $0.lease, node: k.node, bytes: $0.bytes) } }
            return MountStatus(path: pool.mount.path, pageSize: pool.mount.pageSize, poolDir: pool.rootPath,
                               quarantined: b.mounts[mi].quarantined, nodes: nodes, leases: leases, held: held, outsideNames: b.mounts[mi].outsideNames.filter { caller.isRoot || $0.claimant == caller.uid }.map(\.names))
        }
        let (refused, failed) = refusals.withLock { ($0.refused, $0.failedHandovers) }
        return StatusResult(pid: Processes.current(), mounts: mounts, refused: refused, failedHandovers: failed)
    }

    // MARK: fill and drain

    func setTargets(_ scope: PoolScope, drain: Bool) throws(ControlError) {
        let keys = try nodeKeys(scope)
        engine.setTargets(keys, drain: drain, target: scope.target)
        if drain {
            for k in keys { engine.giveBack(k, bytes: UInt64.max / 2) }
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

    /// Checks a claim, then hands out a clean file (see `PoolEngine.claim`). A non-root
    /// caller's file is its own, at most 0600, linked as the caller (so only where it may
    /// write), and within its `uid_quota`.
    package func claim(_ req: ClaimRequest, by caller: Caller = .root) throws(ControlError) -> ClaimResult {
        let c = try CallerPolicy.claim(req, by: caller)
        let mi = try mountIndex(pageSize: c.pageSize)
        let pool = pools[mi]
        let ps = pool.mount.pageSize
        guard c.bytes > 0, c.bytes % ps == 0 else {
            throw ControlError(.badRequest, "claim: size \(c.bytes) is not a positive multiple of the page size \(ByteSize.format(ps))")
        }
        guard c.mode & ~0o777 == 0 else { throw ControlError(.badRequest, "claim: mode \(String(c.mode, radix: 8)) has bits beyond 0777") }
        if let key = c.lease, let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "claim: \(why)") }
        for n in c.nodes where !engine.hasNode(NodeKey(mount: mi, node: n)) {
            throw ControlError(.badRequest, "claim: node \(n) is not a node of this host")
        }
        let largest = engine.counters(mount: mi).filter { c.nodes.isEmpty || c.nodes.contains($0.key.node) }.values.map(\.total).max() ?? 0
        guard c.bytes <= largest else {
            throw ControlError(.badRequest, "claim: \(ByteSize.format(c.bytes)) is more than any allowed node has in huge pages (\(ByteSize.format(largest)))")
        }
        let (dest, st) = try openDestination(c.dest, as: caller)
        try checkDestination(c.dest, st, on: pool)
        // Refuse an occupied destination before anything is picked, cut or extended.
        // (link() in the claim stays the atomic check.)
        if (try? Files.status(in: dest.dir, name: dest.name)) != nil {
            throw ControlError(.badDestination, "claim: cannot create \(c.dest): something already exists there (a file or a symlink); remove it first")
        }
        let quota = caller.isRoot ? nil : uidQuotaBytes()
        return try host.using(c.dest, dest) { () throws(ControlError) in
            try engine.claim(c, mount: mi, claimant: caller.uid, quota: quota)
        }
    }

    /// `uid_quota` in bytes: a percentage is of the huge pages of every pool mount together.
    func uidQuotaBytes() -> UInt64 {
        let total = wakeups.keys.reduce(UInt64(0)) { $0 + engine.counters($1).total }
        return config.uidQuota.resolve(totalBytes: total)
    }

    /// Checks a destination path and opens its parent, once and as the caller (so that the
    /// kernel checks the caller's right to search every directory on the way): an absolute,
    /// plain path inside an allowed directory, outside the pool, through no symlink. Returns
    /// the opened directory, which the claim's link or the release's unlink then uses, and
    /// its status.
    func openDestination(_ dest: String, as caller: Caller) throws(ControlError) -> (OpenedDestination, FileStatus) {
        // Requests are checked as they are decoded; this covers the destinations the daemon
        // builds itself (a hook call's, from the domain XML).
        if let why = PathRule.problem(dest, what: "destination") { throw ControlError(.badDestination, why) }
        let parts = dest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard dest.hasPrefix("/"), parts.count >= 3, !parts.dropFirst().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
            throw ControlError(.badDestination, "destination '\(dest)' must be an absolute path with no '.', '..' or empty components")
        }
        let allowed = config.allowedDirs.isEmpty ? pools.map(\.mount.path) : config.allowedDirs
        func inside(_ dir: String) -> Bool {
            let d = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            return dest.hasPrefix(d + "/")
        }
        if let pool = pools.first(where: { inside($0.rootPath) }) {
            throw ControlError(.badDestination, "destination \(dest) is inside a pool directory; pick a path outside \(pool.rootPath)")
        }
        guard allowed.contains(where: inside) else {
            throw ControlError(.badDestination, "destination \(dest) is outside the allowed directories (\(allowed.joined(separator: ", "))); set allowed_dirs in the prezerod config")
        }
        let parent = "/" + parts.dropFirst().dropLast().joined(separator: "/")
        let who = caller.isRoot ? nil : caller
        let dir: Descriptor
        do {
            dir = try HostFileSystem.acting(as: who) { () throws(SysError) in try Files.openDirectory(path: parent, pathOnly: true) }
        } catch where error.errno == EACCES || error.errno == EPERM {
            throw ControlError(.forbidden, "destination directory \(parent): uid \(caller.uid) may not reach it (permission denied); pick a directory it may write")
        } catch {
            let why = error.errno == ELOOP || error.errno == ENOTDIR ? "a component is a symlink or not a directory" : "\(error)"
            throw ControlError(.badDestination, "destination directory \(parent): \(why)")
        }
        let st: FileStatus
        do { st = try Files.status(dir) } catch { throw ControlError(.system, "\(error)") }
        return (OpenedDestination(dir: dir, name: parts.last!, caller: who), st)
    }

    /// An opened destination directory is on `pool`'s mount and is none of its pool directories.
    func checkDestination(_ dest: String, _ st: FileStatus, on pool: PoolDirectory) throws(ControlError) {
        guard !pool.isPoolDirectory(st) else {
            throw ControlError(.badDestination, "destination \(dest) is inside a pool directory; pick a path outside \(pool.rootPath)")
        }
        guard st.device == pool.device.device else {
            throw ControlError(.badDestination, "destination \(dest) is not on the pool mount \(pool.mount.path); a hugetlbfs file can only be linked within its mount")
        }
    }

    // MARK: release

    /// Finds the lease by key or by its destination's inode, then ends it (see `PoolEngine.release`).
    /// A non-root caller may end only the leases it claimed, and the destination name is
    /// removed as the caller.
    package func release(_ r: ReleaseRequest, by caller: Caller = .root) throws(ControlError) -> ReleaseResult {
        var lease: Lease
        var opened: OpenedDestination?
        if let key = r.lease {
            if let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "release: \(why)") }
            guard let l = engine.lease(key) else { throw ControlError(.notFound, "release: no lease '\(key)'") }
            lease = l
        } else if let dest = r.dest {
            guard let (l, d) = try leaseAt(dest, as: caller) else { throw ControlError(.notFound, "release: \(dest) is not a leased pool file") }
            lease = l
            // Found by its inode at this very path: that is the name to remove.
            lease.dest = dest
            opened = d
        } else {
            throw ControlError(.badRequest, "release: give a lease key or a destination path")
        }
        try CallerPolicy.checkRelease(lease.key, claimant: lease.claimant, by: caller)
        if opened == nil, let dest = lease.dest {
            do {
                let (d, st) = try openDestination(dest, as: caller)
                try checkDestination(dest, st, on: pools[lease.mount])
                opened = d
            } catch where error.code == .forbidden {
                throw ControlError(.forbidden, "release: uid \(caller.uid) cannot reach \(dest) to remove it (permission denied); remove it yourself, or ask root to release lease '\(lease.key)'")
            } catch {
                // Not a place a claim could have linked to: nothing to remove there.
            }
        }
        guard let d = opened, let dest = lease.dest else {
            lease.dest = nil
            return try engine.release(lease)
        }
        return try host.using(dest, d) { () throws(ControlError) in try engine.release(lease) }
    }

    /// The lease whose file is at `dest`, with the directory opened (as the caller) to find it.
    func leaseAt(_ dest: String, as caller: Caller) throws(ControlError) -> (Lease, OpenedDestination)? {
        guard let (d, st) = try? openDestination(dest, as: caller),
              let file = try? Files.status(in: d.dir, name: d.name) else { return nil }
        for (mi, pool) in pools.enumerated() where (try? checkDestination(dest, st, on: pool)) != nil {
            if let l = engine.lease(mount: mi, inode: file.inode) { return (l, d) }
        }
        return nil
    }

    /// make-room on the pool mount of the request's page size (the first one when it is nil).
    package func makeRoom(_ r: MakeRoomRequest) throws(ControlError) -> MakeRoomResult {
        try engine.makeRoom(r, mount: mountIndex(pageSize: r.pageSize))
    }
}
