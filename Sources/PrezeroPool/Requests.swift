import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

/// The control requests. Each either does all of its work or, on a bad request,
/// answers with a clear error and changes nothing.
extension PoolDaemon {
    public func handle(_ r: Request) -> Response {
        do throws(ControlError) {
            switch r {
            case .status:
                return .status(status())
            case .claim(let c):
                return .claim(try claim(c))
            case .release(let rel):
                return .release(try release(rel))
            case .fill(let scope):
                try setTargets(scope, drain: false)
                return .status(status())
            case .drain(let scope):
                try setTargets(scope, drain: true)
                return .status(status())
            case .hook(let h):
                return .hook(try hook(h))
            case .makeRoom(let m):
                return .makeRoom(try makeRoom(m))
            }
        } catch {
            return .error(error)
        }
    }

    // MARK: status

    public func status() -> StatusResult {
        let counters = Dictionary(uniqueKeysWithValues: wakeups.keys.map { ($0, engine.fs.counters($0)) })
        let now = monotonicSeconds()
        return engine.state.withLock { b in
            let mounts = pools.enumerated().map { mi, pool in
                let nodes = b.nodes.filter { $0.key.mount == mi }.sorted { $0.key.node < $1.key.node }.map { k, nb in
                    var s = nb.stats
                    let c = counters[k]!
                    s.totalBytes = c.total
                    s.freeBytes = c.free
                    s.targetBytes = b.target(k, totalBytes: c.total)
                    s.minFreeBytes = b.keepFree(k, totalBytes: c.total, forFill: false, now: now)
                    s.cleanBytes = nb.cleanBytes
                    s.cleanFiles = nb.clean.count
                    s.fillingBytes = nb.fillingBytes
                    s.heldBytes = nb.heldBytes
                    s.leasedBytes = b.leases.values.filter { $0.mount == mi && $0.file.node == k.node }.reduce(0) { $0 + $1.file.bytes }
                    return s
                }
                let leases = b.leases.values.filter { $0.mount == mi }.sorted { $0.key < $1.key }
                    .map { LeaseStatus(lease: $0.key, node: $0.file.node, bytes: $0.file.bytes) }
                let held = b.nodes.filter { $0.key.mount == mi }.sorted { $0.key < $1.key }
                    .flatMap { k, nb in nb.held.map { HeldStatus(lease: $0.lease, node: k.node, bytes: $0.bytes) } }
                return MountStatus(path: pool.mount.path, pageSize: pool.mount.pageSize, poolDir: pool.rootPath,
                                   quarantined: b.mounts[mi].quarantined, nodes: nodes, leases: leases, held: held, outsideNames: b.mounts[mi].outsideNames)
            }
            return StatusResult(pid: Processes.current(), mounts: mounts)
        }
    }

    // MARK: fill and drain

    func setTargets(_ scope: PoolScope, drain: Bool) throws(ControlError) {
        let keys = try nodeKeys(scope)
        engine.state.withLock { $0.setTargets(keys, drain: drain, target: scope.target) }
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

    /// Checks a claim, then hands out a clean file (see `PoolEngine.claim`).
    func claim(_ c: ClaimRequest) throws(ControlError) -> ClaimResult {
        let mi = try mountIndex(pageSize: c.pageSize)
        let pool = pools[mi]
        let ps = pool.mount.pageSize
        guard c.bytes > 0, c.bytes % ps == 0 else {
            throw ControlError(.badRequest, "claim: size \(c.bytes) is not a positive multiple of the page size \(ByteSize.format(ps))")
        }
        guard c.mode & ~0o777 == 0 else { throw ControlError(.badRequest, "claim: mode \(String(c.mode, radix: 8)) has bits beyond 0777") }
        if let key = c.lease, let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "claim: \(why)") }
        for n in c.nodes where engine.state.withLock({ $0.nodes[NodeKey(mount: mi, node: n)] == nil }) {
            throw ControlError(.badRequest, "claim: node \(n) is not a node of this host")
        }
        let largest = engine.counters(mount: mi).filter { c.nodes.isEmpty || c.nodes.contains($0.key.node) }.values.map(\.total).max() ?? 0
        guard c.bytes <= largest else {
            throw ControlError(.badRequest, "claim: \(ByteSize.format(c.bytes)) is more than any allowed node has in huge pages (\(ByteSize.format(largest)))")
        }
        let (destDir, destName) = try openDestination(c.dest, pool: pool)
        // Refuse an occupied destination before anything is picked, cut or extended.
        // (link() in the claim stays the atomic check.)
        if (try? Files.status(in: destDir, name: destName)) != nil {
            throw ControlError(.badDestination, "claim: cannot create \(c.dest): something already exists there (a file or a symlink); remove it first")
        }
        return try engine.claim(c, mount: mi)
    }

    /// Checks a claim destination and opens its parent: an absolute, plain path inside an
    /// allowed directory, on the pool's mount, outside the pool, through no symlink.
    func openDestination(_ dest: String, pool: PoolDirectory) throws(ControlError) -> (Descriptor, String) {
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

    /// Finds the lease by key or by its destination's inode, then ends it (see `PoolEngine.release`).
    func release(_ r: ReleaseRequest) throws(ControlError) -> ReleaseResult {
        var lease: Lease
        if let key = r.lease {
            if let why = LeaseKey.problem(key) { throw ControlError(.badRequest, "release: \(why)") }
            guard let l = engine.state.withLock({ $0.leases[key] }) else { throw ControlError(.notFound, "release: no lease '\(key)'") }
            lease = l
        } else if let dest = r.dest {
            guard let l = try leaseAt(dest) else { throw ControlError(.notFound, "release: \(dest) is not a leased pool file") }
            lease = l
            // Found by its inode at this very path: that is the name to remove.
            lease.dest = dest
        } else {
            throw ControlError(.badRequest, "release: give a lease key or a destination path")
        }
        if let dest = lease.dest, (try? openDestination(dest, pool: pools[lease.mount])) == nil {
            lease.dest = nil  // not a place a claim could have linked to: nothing to remove there
        }
        return try engine.release(lease)
    }

    func leaseAt(_ dest: String) throws(ControlError) -> Lease? {
        for (mi, pool) in pools.enumerated() {
            guard let (dir, name) = try? openDestination(dest, pool: pool) else { continue }
            guard let st = try? Files.status(in: dir, name: name) else { continue }
            if let l = engine.state.withLock({ s in s.leases.values.first { $0.mount == mi && $0.inode == st.inode } }) { return l }
        }
        return nil
    }

    func makeRoom(_ r: MakeRoomRequest) throws(ControlError) -> MakeRoomResult {
        try engine.makeRoom(r, mount: mountIndex(pageSize: r.pageSize))
    }
}
