/// A pool file by its directory entry: mount, state directory, name.
public struct FileRef: Hashable, Sendable, CustomStringConvertible {
    public var mount: Int
    public var state: FileState
    public var name: String
    public init(_ mount: Int, _ state: FileState, _ name: String) {
        self.mount = mount
        self.state = state
        self.name = name
    }
    public var description: String { "m\(mount):\(state.rawValue)/\(name)" }
}

/// One file-system operation a transition asks for. The executor performs them in
/// order through a `PoolFileSystem`; none is performed here.
public enum Effect: Hashable, Sendable, CustomStringConvertible {
    /// Creates an empty file (exclusive), root's, mode 0600.
    case create(FileRef)
    /// fallocate with the memory bound to `node`: the kernel zeroes each new page there.
    /// Fails with ENOSPC when the node (or the mount) has no page left.
    case allocate(FileRef, offset: UInt64, length: UInt64, node: Int)
    case truncate(FileRef, to: UInt64)
    /// Gives the pages of a range back to the kernel.
    case punch(FileRef, offset: UInt64, length: UInt64)
    /// chown, then chmod (in that order: chown clears set-id bits).
    case setOwner(FileRef, uid: UInt32, gid: UInt32, mode: UInt32)
    case rename(FileRef, to: FileRef)
    case unlink(FileRef)
    /// A second name for the file at an absolute path outside the pool (the hand-over).
    case link(FileRef, destination: String)
    /// Removes `destination` if, and only if, it is still a name of this file.
    case unlinkLink(FileRef, destination: String)
    /// Writes zeroes over a range whose pages all exist.
    case zero(FileRef, offset: UInt64, length: UInt64)
    /// Reads the first `bytes` back; fails with EBADMSG unless they are zero.
    case verify(FileRef, bytes: UInt64)
    /// Remembers (or, with nil, forgets) where a lease's first link went, across restarts.
    case journal(lease: String, destination: String?)

    public var description: String {
        switch self {
        case .create(let f): "create \(f)"
        case .allocate(let f, let o, let l, let n): "allocate \(f) [\(o), +\(l)) on node \(n)"
        case .truncate(let f, let s): "truncate \(f) to \(s)"
        case .punch(let f, let o, let l): "punch \(f) [\(o), +\(l))"
        case .setOwner(let f, let u, let g, let m): "own \(f) \(u):\(g) \(String(m, radix: 8))"
        case .rename(let f, let t): "rename \(f) -> \(t)"
        case .unlink(let f): "unlink \(f)"
        case .link(let f, let d): "link \(f) -> \(d)"
        case .unlinkLink(let f, let d): "unlink \(d) if it is \(f)"
        case .zero(let f, let o, let l): "zero \(f) [\(o), +\(l))"
        case .verify(let f, let b): "verify \(f) first \(b)"
        case .journal(let k, let d): d.map { "journal \(k) = \($0)" } ?? "journal forget \(k)"
        }
    }
}

/// Why an effect failed: an errno value and what it was doing.
public struct EffectError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errno: Int32
    public var message: String
    public init(errno: Int32, message: String) {
        self.errno = errno
        self.message = message
    }
    /// Out of huge pages on the node or the mount (ENOSPC).
    public static let noSpace: Int32 = 28
    /// Something already has the name (EEXIST).
    public static let exists: Int32 = 17
    /// A verify that did not read back as zero (EBADMSG).
    public static let notZero: Int32 = 74
    public var isNoSpace: Bool { errno == Self.noSpace }
    public var description: String { message }
}

/// What a file looks like from outside, as an executor reads it.
public struct FileInfo: Sendable, Equatable {
    public var inode: UInt64
    public var links: UInt64
    public var size: UInt64
    /// Bytes that have pages (holes excluded).
    public var allocated: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var permissions: UInt32
    public var isRegular: Bool
    public init(inode: UInt64, links: UInt64, size: UInt64, allocated: UInt64, uid: UInt32, gid: UInt32,
                permissions: UInt32, isRegular: Bool = true) {
        self.inode = inode
        self.links = links
        self.size = size
        self.allocated = allocated
        self.uid = uid
        self.gid = gid
        self.permissions = permissions
        self.isRegular = isRegular
    }
    public var rootOnly: Bool { uid == 0 && gid == 0 && permissions == 0o600 }
}

/// The inodes some process holds open or mapped on one mount. `complete` is false
/// when some process could not be read: then nothing may be taken as free.
public struct Holders: Sendable, Equatable {
    public var inodes: Set<UInt64>
    public var complete: Bool
    public init(inodes: Set<UInt64>, complete: Bool) {
        self.inodes = inodes
        self.complete = complete
    }
    public func isFree(_ inode: UInt64) -> Bool { complete && !inodes.contains(inode) }
}
