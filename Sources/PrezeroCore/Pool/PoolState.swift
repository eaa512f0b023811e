import PrezeroProtocol

/// A (mount, node) pair: the unit a worker owns.
public struct NodeKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var mount: Int
    public var node: Int
    /// The pool of node `node` on the mount at index `mount`.
    public init(mount: Int, node: Int) {
        self.mount = mount
        self.node = node
    }
    public var description: String { "m\(mount)/n\(node)" }
    /// By mount, then node, so that keys sort in a stable order.
    public static func < (a: NodeKey, b: NodeKey) -> Bool { (a.mount, a.node) < (b.mount, b.node) }
}

/// A node's huge pages of one size, in bytes. `free` already excludes pages promised
/// to mappings but not yet faulted in.
public struct NodeCounters: Sendable, Equatable {
    public var free: UInt64
    public var total: UInt64
    /// A node's free and total huge-page bytes.
    public init(free: UInt64, total: UInt64) {
        self.free = free
        self.total = total
    }
}

/// What the daemon knows of one (mount, node) pool. The directories are the
/// truth; this is their index plus counters, rebuilt from them at start-up.
public struct NodeState: Sendable, Equatable {
    public var clean: [PoolFileName] = []
    /// Files being filled, with bytes allocated so far: up to `fill_workers` at once.
    public var filling: [PoolFileName: UInt64] = [:]
    /// Bytes the node's fills are allocating right now (a chunk each), not yet in its free
    /// count: each fill's check of free pages leaves room for the others'.
    public var allocating: UInt64 = 0
    /// The refill in progress: when its first file started, and the bytes its files filled.
    public var refillStarted: Double = 0
    public var refillBytes: UInt64 = 0
    /// Fills cut short by a crash, to finish first.
    public var resume: [PoolFileName] = []
    /// Pages of released files that something outside the pool still pins, oldest first.
    /// They are not the pool's: never counted toward its target, never reused.
    public var held: [HeldPages] = []
    public var target: SizeSpec
    /// The target the config gives: a fill without a target of its own goes back to it.
    public let configuredTarget: SizeSpec
    public var minFree: SizeSpec
    public var fileSize: UInt64
    /// Pages kept free after a make-room, until `holdUntil`.
    public var holdPages: UInt64 = 0
    public var holdUntil: Double = 0
    /// No fill starts before then: while a claim settles (`refill_delay_ms`).
    public var fillBackoffUntil: Double = 0
    /// Nor before then: after a fill that got no page. A file taken back clears it, since
    /// its pages just came back to the kernel.
    public var noPagesUntil: Double = 0
    /// Bytes of files taken back and not refilled yet: their refill starts at once, even
    /// while a claim settles, as the pool's own replacement of what it gave back.
    public var owedRefill: UInt64 = 0
    public var stats: NodeStatus

    /// An empty pool for `node`, with its settings.
    public init(node: Int, target: SizeSpec, minFree: SizeSpec, fileSize: UInt64) {
        self.target = target
        configuredTarget = target
        self.minFree = minFree
        self.fileSize = fileSize
        stats = NodeStatus(node: node)
    }

    public var cleanBytes: UInt64 { clean.reduce(0) { $0 + $1.bytes } }
    public var fillingBytes: UInt64 { filling.values.reduce(0, +) }
    /// What the files being filled will hold once filled, and what of that is still to come.
    public var fillingPlannedBytes: UInt64 { filling.keys.reduce(0) { $0 + $1.bytes } }
    public var fillingOutstandingBytes: UInt64 { filling.reduce(0) { $0 + ($1.key.bytes - min($1.key.bytes, $1.value)) } }
    public var heldBytes: UInt64 { held.reduce(0) { $0 + $1.bytes } }
}

/// Pages a released lease left pinned outside the pool after its file was punched.
public struct HeldPages: Sendable, Equatable {
    /// One take-back's: `<leased name>@<inode>` (lease keys repeat, files do not).
    public var id: String
    public var lease: String
    public var bytes: UInt64
    /// `bytes` pinned by the take-back `id` of a file leased under `lease`.
    public init(id: String, lease: String, bytes: UInt64) {
        self.id = id
        self.lease = lease
        self.bytes = bytes
    }
}


/// One hand-over: the second link `leased/<key>~<file>` and where the first one went.
public struct Lease: Sendable, Equatable {
    public var key: String
    public var mount: Int
    public var file: PoolFileName
    public var dest: String?
    public var inode: UInt64
    /// The uid that claimed it (root for the hook's): only it, or root, may release it, and
    /// its bytes count against that uid's quota until the pages are back.
    public var claimant: UInt32
    /// Still being set up by a claim: the reclaimer leaves it alone.
    public var claiming: Bool
    /// Released by a request: ended, whatever names the file still has. Otherwise a lease
    /// ends when its destination no longer names its file (see `PoolState.leaseEnded`).
    public var released = false
    /// An ended lease whose file something still has open is asked for again no sooner
    /// than this (monotonic seconds), backing off while it stays held: a VM started by
    /// `prezero launch` holds its file for its whole life.
    public var nextScan: Double = 0
    public var heldScans: Int = 0

    /// A lease of `file` under `key`, not yet released; claimed by root by default.
    public init(key: String, mount: Int, file: PoolFileName, dest: String?, inode: UInt64, claiming: Bool, claimant: UInt32 = 0) {
        self.key = key
        self.mount = mount
        self.file = file
        self.dest = dest
        self.inode = inode
        self.claiming = claiming
        self.claimant = claimant
    }

    public var leasedName: String { LeasedName(key: key, file: file).description }
    /// What its pinned pages are journalled and counted under, if its take-back leaves any.
    public var heldID: String { "\(leasedName)@\(inode)" }
    public var ref: FileRef { FileRef(mount, .leased, leasedName) }
}

/// Names a taken-back file had outside the pool, and the uid whose lease it was.
public struct ClaimantsNames: Sendable, Equatable {
    public var claimant: UInt32
    public var names: OutsideNameStatus
}

/// One pool mount as the state sees it.
public struct MountState: Sendable, Equatable {
    public var pageSize: UInt64
    public var nodes: [Int]
    public var learned: LearnedShapes
    public var quarantined = 0
    /// The last files taken back with names outside the pool, newest last, with the uid that
    /// claimed each: the names are paths in that tenant's directories, shown to it and root only.
    public var outsideNames: [ClaimantsNames] = []

    /// A mount with no file yet, learning at most `learnedCapacity` shapes.
    public init(pageSize: UInt64, nodes: [Int], learnedCapacity: Int) {
        self.pageSize = pageSize
        self.nodes = nodes
        learned = LearnedShapes(capacity: learnedCapacity)
    }
}

/// The whole pool as a value: every decision the daemon makes is a transition of
/// it (see `PoolState+Transitions.swift`), and every file operation that follows
/// from one is an `Effect` the caller performs. Nothing here touches the host.
public struct PoolState: Sendable, Equatable {
    public var config: Config
    public var mounts: [MountState]
    public var nodes: [NodeKey: NodeState] = [:]
    public var leases = LeaseTable()
    public var seq: UInt64 = 0
    public var stopping = false
    /// Files an operation left where its failure left them, unknown to the state until a
    /// restart's recovery settles them (a failed compensation, or a file that could not go).
    public var abandoned = 0

    /// - Parameter mounts: each mount's page size, nodes and own settings.
    public init(config: Config, mounts: [(pageSize: UInt64, nodes: [Int], config: MountConfig)]) {
        self.config = config
        self.mounts = mounts.map { MountState(pageSize: $0.pageSize, nodes: $0.nodes, learnedCapacity: config.learnedShapes) }
        for (mi, m) in mounts.enumerated() {
            for n in m.nodes {
                let target = m.config.nodes?[String(n)] ?? m.config.target ?? config.target
                let fileSize = (m.config.fileSize ?? config.fileSize).resolve(totalBytes: 0)
                nodes[NodeKey(mount: mi, node: n)] = NodeState(
                    node: n, target: target, minFree: m.config.minFree ?? config.minFree,
                    fileSize: max(ByteSize.roundUp(fileSize, to: m.pageSize), m.pageSize))
            }
        }
    }

    public var keys: [NodeKey] { nodes.keys.sorted() }

    /// A sequence number not used before, for a new file name or a made-up lease key.
    public mutating func nextSeq() -> UInt64 {
        seq += 1
        return seq
    }

    /// The page size of the node's mount.
    public func pageSize(_ k: NodeKey) -> UInt64 { mounts[k.mount].pageSize }

    /// Bytes that must stay free on a node: `min_free`, plus (for filling only) the
    /// pages a recent make-room set aside for a launch. The hold keeps fills out of
    /// those pages; it does not make the daemon give more back once the launch took them.
    public func keepFree(_ k: NodeKey, totalBytes: UInt64, forFill: Bool, now: Double) -> UInt64 {
        guard let nb = nodes[k] else { return 0 }
        let ps = pageSize(k)
        let minFree = ByteSize.roundUp(nb.minFree.resolve(totalBytes: totalBytes), to: ps)
        let hold = forFill && now < nb.holdUntil ? nb.holdPages * ps : 0
        return minFree + hold
    }

    /// Bytes the pool should hold on the node, rounded down to whole pages.
    public func target(_ k: NodeKey, totalBytes: UInt64) -> UInt64 {
        let ps = pageSize(k)
        return (nodes[k]?.target.resolve(totalBytes: totalBytes) ?? 0) / ps * ps
    }

    /// Every pool file the state knows on a mount, by state (leases included; quarantine not).
    public func knownFiles(mount mi: Int) -> [FileRef] {
        var out: [FileRef] = []
        for (k, nb) in nodes where k.mount == mi {
            out += nb.clean.map { FileRef(mi, .clean, $0.description) }
            out += nb.filling.keys.map { FileRef(mi, .filling, $0.description) }
            out += nb.resume.map { FileRef(mi, .filling, $0.description) }
        }
        out += leases.values.filter { $0.mount == mi }.map(\.ref)
        return out
    }
}
