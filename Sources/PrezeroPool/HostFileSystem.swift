import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// A claim's or a release's destination directory, opened once by the request (as its
/// caller), with the name in it: the request's checks and its `.link` or `.unlinkLink`
/// effect use this one descriptor, so no path is looked up twice.
public struct OpenedDestination: Sendable {
    public let dir: Descriptor
    public let name: String
    /// Whom the link or unlink is made as, so that the kernel checks the caller's own right
    /// to write in `dir`; nil: as prezerod (a root caller).
    public let caller: Caller?
}

/// The pool's file system on this host: every effect through PrezeroSys, relative to
/// the pool's directory descriptors and never through a symlink.
public final class HostFileSystem: PoolFileSystem {
    let pools: [PoolDirectory]
    /// `<state_dir>/leases/<lease>`: where a lease's first link went.
    let leaseJournal: String
    /// `<state_dir>/held/<lease>~<file>@<inode>`: the mount's path, the node and the bytes a taken-back lease left pinned.
    let heldJournal: String
    /// One lock per (mount, node): every effect that changes how many pages the node has
    /// free holds it shared (a node's fills run at once), and a take-back's punch holds it
    /// alone, so that its count of what came back is the punch's own.
    let nodeLocks: [NodeKey: SharedLock]
    /// Destinations of the requests in progress, by path (the path the effects name).
    let opened = Mutex<[String: OpenedDestination]>([:])

    init(pools: [PoolDirectory], stateDir: String, nodes: [NodeKey]) throws(SysError) {
        self.pools = pools
        leaseJournal = stateDir + "/leases"
        heldJournal = stateDir + "/held"
        try Files.makeDirectories(leaseJournal, mode: 0o700)
        try Files.makeDirectories(heldJournal, mode: 0o700)
        nodeLocks = Dictionary(uniqueKeysWithValues: nodes.map { ($0, SharedLock()) })
    }

    func dir(_ f: FileRef) -> Descriptor { pools[f.mount].dir(f.state) }

    func open(_ f: FileRef, create: Bool = false) throws(SysError) -> Descriptor {
        try pools[f.mount].open(f.state, f.name, create: create)
    }

    /// The node a pool file's pages were asked for, from its name.
    func node(of f: FileRef) -> NodeKey? {
        PoolFileName(entry: f.name).map { NodeKey(mount: f.mount, node: $0.node) }
    }

    /// Runs `body` holding node `k`'s lock: shared, or `alone` (nothing else changes the
    /// node's free pages meanwhile).
    func paused<T>(_ k: NodeKey?, alone: Bool = false, _ body: () throws(SysError) -> T) throws(SysError) -> T {
        guard let k, let lock = nodeLocks[k] else { return try body() }
        return try lock.with(exclusive: alone, body)
    }

    /// Performs `e` through PrezeroSys; a failure names the effect and the call that failed.
    public func perform(_ e: Effect) throws(EffectError) -> Observed? {
        do throws(SysError) {
            return try apply(e)
        } catch {
            throw EffectError(errno: error.errno, message: "\(e): \(error)")
        }
    }

    private func apply(_ e: Effect) throws(SysError) -> Observed? {
        switch e {
        case .create(let f):
            _ = try open(f, create: true)
        case .allocate(let f, let offset, let length, let node):
            let fd = try open(f)
            try paused(NodeKey(mount: f.mount, node: node)) { () throws(SysError) in
                try Numa.withMemory(onNode: node) { () throws(SysError) in try Files.allocate(fd, offset: offset, length: length) }
            }
        case .truncate(let f, let size):
            let fd = try open(f)
            try paused(node(of: f)) { () throws(SysError) in try Files.truncate(fd, to: size) }
        case .punch(let f, let offset, let length):
            let fd = try open(f)
            try paused(node(of: f)) { () throws(SysError) in try Files.punchHole(fd, offset: offset, length: length) }
        case .setOwner(let f, let uid, let gid, let mode):
            try Files.setOwner(open(f), uid: uid, gid: gid, mode: mode)
        case .rename(let f, let to):
            try Files.rename(in: dir(f), f.name, to: dir(to), to.name)
        case .unlink(let f):
            try paused(node(of: f)) { () throws(SysError) in try Files.unlink(in: dir(f), f.name) }
        case .link(let f, let dest):
            guard let d = opened.withLock({ $0[dest] }) else { throw SysError("link", "\(dest) (no request opened its directory)", errno: EINVAL) }
            let fd = try open(f)
            try Self.acting(as: d.caller) { () throws(SysError) in try Files.link(fd, to: d.dir, d.name) }
            return .linked(inode: try Files.status(fd).inode)
        case .unlinkLink(let f, let dest):
            // No directory opened: not a place the request could reach, nothing to remove.
            guard let d = opened.withLock({ $0[dest] }) else { return nil }
            // The leased file's inode by its name: no open of a file its tenant may hold a lease on.
            guard let inode = try Files.status(in: dir(f), name: f.name)?.inode else { throw SysError("stat", "\(f)", errno: ENOENT) }
            try Self.acting(as: d.caller) { () throws(SysError) in
                guard let st = try Files.status(in: d.dir, name: d.name), st.inode == inode,
                      st.device == pools[f.mount].device.device else { return }
                try Files.unlink(in: d.dir, d.name)
            }
        case .checkSole(let f):
            guard let st = try Files.status(in: dir(f), name: f.name) else { throw SysError("stat", "\(f)", errno: ENOENT) }
            guard st.links == 1 else { throw SysError("links", "\(f) has \(st.links) names", errno: EMLINK) }
        case .takeBack(let f, let node):
            return .tookBack(try takeBack(f, node: NodeKey(mount: f.mount, node: node)))
        case .journal(let key, let dest?, let claimant):
            try Files.writeText("\(leaseJournal)/.\(key).new", LeaseRecord(dest: dest, claimant: claimant).text)
            try Files.renamePath("\(leaseJournal)/.\(key).new", "\(leaseJournal)/\(key)")
        case .journal(let key, nil, _):
            try remove("\(leaseJournal)/\(key)")
        case .journalHeld(let key, let mi, let node, let bytes?):
            try Files.writeText("\(heldJournal)/.\(key).new", "\(pools[mi].mount.path)\n\(node)\n\(bytes)\n")
            try Files.renamePath("\(heldJournal)/.\(key).new", "\(heldJournal)/\(key)")
        case .journalHeld(let key, _, _, nil):
            try remove("\(heldJournal)/\(key)")
        }
        return nil
    }

    /// See `Effect.takeBack`. The write lease is the kernel's O(1) answer to "does anyone
    /// else have this file open?", however many processes the host runs; no /proc scan
    /// decides. The link count is read through the same descriptor, after the file became
    /// root's: a name made elsewhere before that is found, reported, and keeps nothing alive.
    func takeBack(_ f: FileRef, node k: NodeKey) throws(SysError) -> TakeBack {
        let fd = try open(f)
        try Files.takeWriteLease(fd)
        defer { Files.dropLease(fd) }
        let st = try Files.status(fd)
        let ps = pools[f.mount].mount.pageSize
        let freeBefore: UInt64, freeAfter: UInt64
        (freeBefore, freeAfter) = try paused(k, alone: true) { () throws(SysError) in
            let before = rawFree(k)
            if st.size > 0 { try Files.punchHole(fd, offset: 0, length: ByteSize.roundUp(st.size, to: ps)) }
            return (before, rawFree(k))
        }
        try Files.unlink(in: dir(f), f.name)
        let back = (freeAfter - min(freeAfter, freeBefore)) * ps
        let extra = st.links > 1 ? st.links - 1 : 0
        return TakeBack(bytes: st.allocated, held: st.allocated - min(st.allocated, back), extraLinks: extra,
                        names: extra > 0 ? names(of: st.inode, mount: f.mount) : [])
    }

    func rawFree(_ k: NodeKey) -> UInt64 {
        HugePageCounters.node(k.node, pageSize: pools[k.mount].mount.pageSize)?.free ?? 0
    }

    /// Where else on the mount a file has names, for the log and `status`: a bounded walk
    /// (a few names, 16 levels, 100,000 entries), outside the pool directory.
    func names(of inode: UInt64, mount mi: Int) -> [String] {
        let pool = pools[mi]
        var found: [String] = []
        var budget = 100_000
        func walk(_ dir: Descriptor, _ path: String, depth: Int) {
            guard depth < 16, let entries = try? Files.list(dir) else { return }
            for name in entries {
                budget -= 1
                guard budget > 0, found.count < 8 else { return }
                guard let st = try? Files.status(in: dir, name: name), st.device == pool.device.device else { continue }
                let p = path == "/" ? "/\(name)" : "\(path)/\(name)"
                if st.isRegular, st.inode == inode {
                    found.append(p)
                } else if st.isDirectory, st.inode != pool.device.inode, let sub = try? Files.openDirectory(in: dir, name: name) {
                    walk(sub, p, depth: depth + 1)
                }
            }
        }
        if let root = try? Files.openDirectory(path: pool.mount.path) { walk(root, pool.mount.path, depth: 0) }
        return found
    }

    /// Runs `body` as `caller` (see `ThreadIdentity.asUser`), or as prezerod for nil.
    static func acting<T>(as caller: Caller?, _ body: () throws(SysError) -> T) throws(SysError) -> T {
        guard let c = caller else { return try body() }
        return try ThreadIdentity.asUser(uid: c.uid, gid: c.gid, groups: c.groups, body)
    }

    /// Runs one request's `body` with `d` as the opened directory of destination `path`, for
    /// the effects that name it. Two requests for one path at once: the second is refused.
    func using<T>(_ path: String, _ d: OpenedDestination, _ body: () throws(ControlError) -> T) throws(ControlError) -> T {
        let mine = opened.withLock { o in
            guard o[path] == nil else { return false }
            o[path] = d
            return true
        }
        guard mine else { throw ControlError(.busy, "another request for \(path) is in progress; try again") }
        defer { opened.withLock { _ = $0.removeValue(forKey: path) } }
        return try body()
    }

    /// The parent of an absolute destination, opened through no symlink, and the name in it:
    /// for looking at a lease's destination, never for changing it (a request's own
    /// `OpenedDestination` serves that).
    func destination(_ path: String) throws(SysError) -> (Descriptor, String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard path.hasPrefix("/"), parts.count >= 3, let name = parts.last else { throw SysError("link", path, errno: EINVAL) }
        let parent = "/" + parts.dropFirst().dropLast().joined(separator: "/")
        return (try Files.openDirectory(path: parent, pathOnly: true), name)
    }

    /// Looked up without following a symlink, and only on the mount's own device.
    public func destinationInode(_ path: String, mount mi: Int) -> UInt64? {
        guard let (dir, name) = try? destination(path), let st = try? Files.status(in: dir, name: name),
              st.device == pools[mi].device.device else { return nil }
        return st.inode
    }

    /// One `fstatat` of the name in its state directory, no open.
    public func status(_ f: FileRef) throws(EffectError) -> FileInfo? {
        do throws(SysError) {
            guard let st = try Files.status(in: dir(f), name: f.name) else { return nil }
            // One fstatat, no open: reclaim asks this of every lease on every pass.
            return FileInfo(inode: st.inode, links: st.links, size: st.size, allocated: st.isRegular ? st.allocated : 0, uid: st.uid,
                            gid: st.gid, permissions: st.permissions, isRegular: st.isRegular)
        } catch {
            throw EffectError(errno: error.errno, message: "status of \(f): \(error)")
        }
    }

    /// Every entry of the mount's state directories (see `PoolDirectory`).
    public func listing(mount mi: Int) throws(EffectError) -> [ListedFile] {
        do throws(SysError) {
            return try pools[mi].listing()
        } catch {
            throw EffectError(errno: error.errno, message: "listing \(pools[mi].rootPath): \(error)")
        }
    }

    /// Read from sysfs and the files' allocated bytes, holding the node's lock alone.
    public func usage(_ k: NodeKey, files: [FileRef]) -> (inUse: UInt64, inFiles: UInt64) {
        let ps = pools[k.mount].mount.pageSize
        return (try? paused(k, alone: true) { () throws(SysError) in
            let c = HugePageCounters.node(k.node, pageSize: ps)
            let inFiles = files.reduce(UInt64(0)) { sum, f in sum + ((try? Files.status(in: dir(f), name: f.name))??.allocated ?? 0) }
            return (((c?.total ?? 0) - min(c?.total ?? 0, c?.free ?? 0)) * ps, inFiles)
        }) ?? (0, 0)
    }

    /// Pages promised to mappings (reserved, not yet faulted) count as taken: the kernel
    /// only counts reservations host-wide, so they are subtracted from every node.
    public func counters(_ k: NodeKey) -> NodeCounters {
        let ps = pools[k.mount].mount.pageSize
        let c = HugePageCounters.node(k.node, pageSize: ps)
        let free = c?.free ?? 0
        let reserved = HugePageCounters.reserved(pageSize: ps)
        return NodeCounters(free: (free - min(free, reserved)) * ps, total: (c?.total ?? 0) * ps)
    }

    /// Read from `<state_dir>/leases/<lease>`; nil when there is no record or it does not read.
    public func journal(_ lease: String) -> LeaseRecord? { Files.readText("\(leaseJournal)/\(lease)").flatMap(LeaseRecord.parse) }

    func remove(_ path: String) throws(SysError) {
        do throws(SysError) {
            try Files.removePath(path)
        } catch where error.errno == ENOENT {}
    }

    /// Read from `<state_dir>/held`, keeping the entries of this mount's path.
    public func heldJournal(mount mi: Int) -> [(id: String, node: Int, bytes: UInt64)] {
        Files.list(path: heldJournal).filter { !$0.hasPrefix(".") }.compactMap { key in
            let f = (Files.readText("\(heldJournal)/\(key)") ?? "").split(separator: "\n").map(String.init)
            guard f.count == 3, f[0] == pools[mi].mount.path, let node = Int(f[1]), let bytes = UInt64(f[2]) else { return nil }
            return (key, node, bytes)
        }
    }
}
