import PrezeroCore

/// A (mount, node) pair: the unit a worker owns.
struct NodeKey: Hashable, Sendable, CustomStringConvertible {
    var mount: Int
    var node: Int
    var description: String { "m\(mount)/n\(node)" }
}

/// What the daemon knows of one (mount, node) pool. The directories are the
/// truth; this is their index plus counters, rebuilt from them at start-up.
struct NodeBook: Sendable {
    var clean: [PoolFileName] = []
    var dirty: [PoolFileName] = []
    /// Files being filled, with bytes allocated so far.
    var filling: [PoolFileName: UInt64] = [:]
    var scrubbing: [PoolFileName] = []
    /// Fills cut short by a crash, to finish first.
    var resume: [PoolFileName] = []
    var target: SizeSpec
    var minFree: SizeSpec
    var fileSize: UInt64
    /// Pages kept free after a make-room, until `holdUntil`.
    var holdPages: UInt64 = 0
    var holdUntil: Double = 0
    /// A fill that got no page at all (node or mount full) waits until then before the next try.
    var fillBackoffUntil: Double = 0
    var stats: NodeStatus

    init(node: Int, target: SizeSpec, minFree: SizeSpec, fileSize: UInt64) {
        self.target = target
        self.minFree = minFree
        self.fileSize = fileSize
        stats = NodeStatus(node: node)
    }

    var cleanBytes: UInt64 { clean.reduce(0) { $0 + $1.bytes } }
    var fillingBytes: UInt64 { filling.values.reduce(0, +) }
}

/// One hand-over: the second link `leased/<key>~<file>` and where the first one went.
struct Lease: Sendable {
    var key: String
    var mount: Int
    var file: PoolFileName
    var dest: String?
    var inode: UInt64
    /// Still being set up by a claim: the reclaimer leaves it alone. Whether a lease
    /// has ended is not kept here: it is derived from the file's link count.
    var claiming: Bool
    /// An ended lease whose file a process still holds is scanned for again no sooner
    /// than this (monotonic seconds), backing off while it stays held: a VM started by
    /// `prezero launch` holds its file for its whole life, and each scan reads every
    /// process's descriptors and maps.
    var nextScan: Double = 0
    var heldScans: Int = 0

    var leasedName: String { LeasedName(key: key, file: file).description }
}

struct Book: Sendable {
    var nodes: [NodeKey: NodeBook] = [:]
    var leases: [String: Lease] = [:]
    var learned: [LearnedShapes] = []
    var quarantined: [Int] = []
    var seq: UInt64 = 0
    var stopping = false

    mutating func nextSeq() -> UInt64 {
        seq += 1
        return seq
    }
}

/// Work a node worker picks up.
enum Job: Sendable {
    case fill(PoolFileName, resume: Bool)
    case scrub(PoolFileName)
    case stop
}
