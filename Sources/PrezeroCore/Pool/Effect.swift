/// A pool file by its directory entry: mount, state directory, name.
public struct FileRef: Hashable, Sendable, CustomStringConvertible {
    public var mount: Int
    public var state: FileState
    public var name: String
    /// The file `name` in `state`'s directory of pool mount `mount`.
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
    /// Fails with EMLINK unless the file's only name is this one: a file with a name
    /// outside the pool never reaches a tenant.
    case checkSole(FileRef)
    /// Takes a released file back: a write lease on it proves that no other open file
    /// description of it exists anywhere (descriptors, mappings, descriptors in flight,
    /// io_uring files) or fails with EAGAIN; then its pages are punched out, with the
    /// node's own fills paused so that the rise of its free pages shows what pins still
    /// hold, and its name is removed. The inode is never seen again.
    case takeBack(FileRef, node: Int)
    /// Remembers (or, with nil, forgets) where a lease's first link went and which uid
    /// claimed it, across restarts (see `LeaseRecord`).
    case journal(lease: String, destination: String?, claimant: UInt32 = 0)
    /// Remembers (or, with nil, forgets) the pages a taken-back lease left pinned outside
    /// the pool, across restarts: written at the file's whole size before the punch, so
    /// that a crash never loses pinned pages from the count, and set to what stayed after.
    case journalHeld(id: String, mount: Int, node: Int, bytes: UInt64?)

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
        case .checkSole(let f): "check that \(f) has no other name"
        case .takeBack(let f, let n): "take back \(f) (node \(n))"
        case .journal(let k, let d, let u): d.map { "journal \(k) = \($0) (uid \(u))" } ?? "journal forget \(k)"
        case .journalHeld(let k, _, let n, let b): b.map { "journal \(k) holds \($0) bytes on node \(n)" } ?? "journal: \(k) holds nothing"
        }
    }
}

/// Why an effect failed: an errno value and what it was doing.
public struct EffectError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errno: Int32
    public var message: String
    /// A failure with its errno value and what it was doing.
    public init(errno: Int32, message: String) {
        self.errno = errno
        self.message = message
    }
    /// Out of huge pages on the node or the mount (ENOSPC).
    public static let noSpace: Int32 = 28
    /// Something already has the name (EEXIST).
    public static let exists: Int32 = 17
    /// A take-back refused: another open file description of the file exists (EAGAIN).
    public static let inUse: Int32 = 11
    /// A file with more names than it should have (EMLINK).
    public static let otherNames: Int32 = 31
    public var isNoSpace: Bool { errno == Self.noSpace }
    /// The kernel refused whom the effect was performed as (EACCES or EPERM).
    public var isPermission: Bool { errno == 13 || errno == 1 }
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
    /// A file's status; a regular file by default.
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

/// What performing an effect observed, for the state to settle with.
public enum Observed: Sendable, Equatable {
    /// `link`: the inode now at the destination.
    case linked(inode: UInt64)
    /// `takeBack`: what the file held and what of it did not come back to the kernel.
    case tookBack(TakeBack)
}

/// A released file taken back by `Effect.takeBack`.
public struct TakeBack: Sendable, Equatable {
    /// Bytes the file had pages for before the punch.
    public var bytes: UInt64
    /// Of those, bytes the node's free pages did not get back: pinned outside the pool.
    public var held: UInt64
    /// Links beyond its `leased/` name when it was taken, and where they were found.
    public var extraLinks: UInt64
    public var names: [String]
    /// By default the file had no other name.
    public init(bytes: UInt64, held: UInt64, extraLinks: UInt64 = 0, names: [String] = []) {
        self.bytes = bytes
        self.held = held
        self.extraLinks = extraLinks
        self.names = names
    }
}
