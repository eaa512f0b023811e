import Glibc
import PrezeroCore
import PrezeroSys

/// The pool's file system on this host: every effect through PrezeroSys, relative to
/// the pool's directory descriptors and never through a symlink.
public final class HostFileSystem: PoolFileSystem {
    let pools: [PoolDirectory]
    let leaseJournal: String
    let zeroMethod: ZeroMethod
    let verifyMode: VerifyMode

    init(pools: [PoolDirectory], leaseJournal: String, zero: ZeroMethod, verify: VerifyMode) {
        self.pools = pools
        self.leaseJournal = leaseJournal
        zeroMethod = zero
        verifyMode = verify
    }

    func dir(_ f: FileRef) -> Descriptor { pools[f.mount].dir(f.state) }

    func open(_ f: FileRef, create: Bool = false) throws(SysError) -> Descriptor {
        try pools[f.mount].open(f.state, f.name, create: create)
    }

    public func perform(_ e: Effect) throws(EffectError) -> UInt64? {
        do throws(SysError) {
            return try apply(e)
        } catch {
            throw EffectError(errno: error.errno, message: "\(e): \(error)")
        }
    }

    private func apply(_ e: Effect) throws(SysError) -> UInt64? {
        switch e {
        case .create(let f):
            _ = try open(f, create: true)
        case .allocate(let f, let offset, let length, let node):
            let fd = try open(f)
            try Numa.withMemory(onNode: node) { () throws(SysError) in try Files.allocate(fd, offset: offset, length: length) }
        case .truncate(let f, let size):
            try Files.truncate(open(f), to: size)
        case .punch(let f, let offset, let length):
            try Files.punchHole(open(f), offset: offset, length: length)
        case .setOwner(let f, let uid, let gid, let mode):
            try Files.setOwner(open(f), uid: uid, gid: gid, mode: mode)
        case .rename(let f, let to):
            try Files.rename(in: dir(f), f.name, to: dir(to), to.name)
        case .unlink(let f):
            try Files.unlink(in: dir(f), f.name)
        case .link(let f, let dest):
            let (destDir, name) = try destination(dest)
            try Files.link(in: dir(f), f.name, to: destDir, name)
            return try Files.status(open(f)).inode
        case .unlinkLink(let f, let dest):
            guard let (destDir, name) = try? destination(dest),
                  let st = try Files.status(in: destDir, name: name),
                  st.inode == (try Files.status(open(f))).inode, st.device == pools[f.mount].device.device
            else { return nil }
            try Files.unlink(in: destDir, name)
        case .zero(let f, let offset, let length):
            let map = try Mapping(open(f), length: Int(offset + length))
            defer { map.unmap() }
            Scrub.zero(zeroMethod, map.base + Int(offset), Int(length))
        case .verify(let f, let bytes):
            let map = try Mapping(open(f), length: Int(bytes))
            defer { map.unmap() }
            guard Scrub.verify(map, pageSize: Int(pools[f.mount].mount.pageSize), mode: verifyMode) else {
                throw SysError("verify", "\(f): not all zero", errno: EBADMSG)
            }
        case .journal(let key, let dest?):
            try Files.writeText("\(leaseJournal)/.\(key).new", dest)
            try Files.renamePath("\(leaseJournal)/.\(key).new", "\(leaseJournal)/\(key)")
        case .journal(let key, nil):
            do throws(SysError) {
                try Files.removePath("\(leaseJournal)/\(key)")
            } catch where error.errno == ENOENT {}
        }
        return nil
    }

    /// The parent of an absolute destination, opened through no symlink, and the name in it.
    func destination(_ path: String) throws(SysError) -> (Descriptor, String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard path.hasPrefix("/"), parts.count >= 3, let name = parts.last else { throw SysError("link", path, errno: EINVAL) }
        let parent = "/" + parts.dropFirst().dropLast().joined(separator: "/")
        return (try Files.openDirectory(path: parent, pathOnly: true), name)
    }

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

    public func listing(mount mi: Int) throws(EffectError) -> [ListedFile] {
        do throws(SysError) {
            return try pools[mi].listing()
        } catch {
            throw EffectError(errno: error.errno, message: "listing \(pools[mi].rootPath): \(error)")
        }
    }

    public func holders(mount mi: Int) -> Holders {
        let h = pools[mi].holders()
        return Holders(inodes: Set(h.files.map(\.inode)), complete: h.complete)
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

    public func journal(_ lease: String) -> String? { Files.readText("\(leaseJournal)/\(lease)") }
}
