/// Counters and contents of one (mount, node) pool.
public struct NodeStatus: Codable, Sendable, Equatable {
    public var node: Int
    public var cpus: [Int]
    /// Files the node fills at once (`fill_workers`).
    public var fillWorkers: Int
    public var totalBytes: UInt64
    public var freeBytes: UInt64
    public var targetBytes: UInt64
    public var minFreeBytes: UInt64
    /// Free pages a recent make-room keeps out of the pool's fills, for the launch it was
    /// made for (`make_room_hold_s`); 0 once the hold is over.
    public var keptForLaunchBytes: UInt64
    public var cleanBytes: UInt64
    public var leasedBytes: UInt64
    /// Of those, files released and not taken back yet: something still has them open (a
    /// VMM that has not exited), or the monitor has not come to them. A backlog that grows
    /// is pages the pool cannot refill with.
    public var releasingBytes: UInt64
    public var fillingBytes: UInt64
    /// Pages of released files that something outside the pool still pins (an io_uring
    /// buffer, a pipe): punched out of their file, not back in the kernel's free pool,
    /// never reused by the pool. Counted until the pages are seen free again.
    public var heldBytes: UInt64
    public var cleanFiles: Int
    /// The node's rate over its last refill, all of its workers together: bytes filled from
    /// the first file started to the last one finished, over that time.
    public var fillRate: Double
    public var filledBytes: UInt64
    /// Bytes of released files whose pages went back to the kernel.
    public var recycledBytes: UInt64
    public var recycledFiles: UInt64
    public var yieldedBytes: UInt64
    public var outcomes: [ClaimOutcome: UInt64]

    /// A node with every count at 0, one fill worker and each claim outcome at 0; the daemon fills it in.
    public init(node: Int) {
        self.node = node
        cpus = []
        fillWorkers = 1
        totalBytes = 0
        freeBytes = 0
        targetBytes = 0
        minFreeBytes = 0
        keptForLaunchBytes = 0
        cleanBytes = 0
        leasedBytes = 0
        releasingBytes = 0
        fillingBytes = 0
        heldBytes = 0
        cleanFiles = 0
        fillRate = 0
        filledBytes = 0
        recycledBytes = 0
        recycledFiles = 0
        yieldedBytes = 0
        outcomes = Dictionary(uniqueKeysWithValues: ClaimOutcome.allCases.map { ($0, 0) })
    }

    enum CodingKeys: String, CodingKey {
        case node, cpus, outcomes
        case fillWorkers = "fill_workers"
        case totalBytes = "total_bytes", freeBytes = "free_bytes", targetBytes = "target_bytes"
        case minFreeBytes = "min_free_bytes", cleanBytes = "clean_bytes", heldBytes = "held_outside_bytes"
        case keptForLaunchBytes = "kept_for_launch_bytes"
        case leasedBytes = "leased_bytes", releasingBytes = "releasing_bytes", fillingBytes = "filling_bytes"
        case cleanFiles = "clean_files", fillRate = "fill_rate_bps"
        case filledBytes = "filled_bytes", recycledBytes = "recycled_bytes", recycledFiles = "recycled_files"
        case yieldedBytes = "yielded_bytes"
    }
}

/// A file handed out and not yet reclaimed: what accounting by VM sums, since the hugetlb
/// cgroup charges pool pages to prezerod's cgroup, not the VM's (README, Accounting).
public struct LeaseStatus: Codable, Sendable, Equatable {
    public var lease: String
    /// Who holds it, from the key: the libvirt hook's keys are `<domain uuid>.<alias>`
    /// (the alias may hold dots: `pc.ram`), so the domain's UUID; `prezero launch`'s are
    /// `launch.<pid>.<region>`, so `launch.<pid>`; any other key is its own.
    public var vm: String
    public var node: Int
    public var bytes: UInt64

    /// `vm` is worked out from the key.
    public init(lease: String, node: Int, bytes: UInt64) {
        self.lease = lease
        self.vm = Self.vm(lease)
        self.node = node
        self.bytes = bytes
    }

    static func vm(_ key: String) -> String {
        let parts = key.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        let uuidShape = [8, 4, 4, 4, 12]
        if parts.count >= 2, parts[0].split(separator: "-", omittingEmptySubsequences: false).map(\.count) == uuidShape,
           parts[0].allSatisfy({ $0 == "-" || $0.isHexDigit }) {
            return String(parts[0])
        }
        if parts.count == 3, parts[0] == "launch" { return "launch.\(parts[1])" }
        return key
    }
}

/// Pages of a released file that something outside the pool still pins after its punch:
/// the file's allocated bytes before the punch less the rise of the node's free pages
/// across it, measured with the node's fills paused.
public struct HeldStatus: Codable, Sendable, Equatable {
    public var lease: String
    public var node: Int
    public var bytes: UInt64
    /// The pages `lease`'s file left pinned on `node`.
    public init(lease: String, node: Int, bytes: UInt64) {
        self.lease = lease
        self.node = node
        self.bytes = bytes
    }
}

/// A released file that carried a name outside the pool when it was taken back: its
/// pages were punched all the same, and the name now leads to an empty root-only file.
public struct OutsideNameStatus: Codable, Sendable, Equatable {
    public var lease: String
    /// Where the names were found on the mount (empty when none was found in the walk).
    public var names: [String]
    /// Links the file had beyond its own `leased/` name.
    public var extraLinks: UInt64
    /// The names found for `lease`'s file and how many links it had beyond its own.
    public init(lease: String, names: [String], extraLinks: UInt64) {
        self.lease = lease
        self.names = names
        self.extraLinks = extraLinks
    }
    enum CodingKeys: String, CodingKey {
        case lease, names
        case extraLinks = "extra_links"
    }
}

/// One pool mount in `status`: its page size, pool directory, quarantined files, nodes and leases.
public struct MountStatus: Codable, Sendable, Equatable {
    public var path: String
    public var pageSize: UInt64
    public var poolDir: String
    public var quarantined: Int
    public var nodes: [NodeStatus]
    public var leases: [LeaseStatus]
    public var held: [HeldStatus]
    /// The last files taken back with a name outside the pool (at most 16).
    public var outsideNames: [OutsideNameStatus]
    /// Leases, held pages and outside names default to none.
    public init(path: String, pageSize: UInt64, poolDir: String, quarantined: Int, nodes: [NodeStatus], leases: [LeaseStatus] = [],
                held: [HeldStatus] = [], outsideNames: [OutsideNameStatus] = []) {
        self.path = path
        self.pageSize = pageSize
        self.poolDir = poolDir
        self.quarantined = quarantined
        self.nodes = nodes
        self.leases = leases
        self.held = held
        self.outsideNames = outsideNames
    }
    enum CodingKeys: String, CodingKey {
        case path, nodes, quarantined, leases
        case pageSize = "page_size", poolDir = "pool_dir", held = "held_outside", outsideNames = "outside_names"
    }
}

/// The answer to status, fill and drain: prezerod's pid and each pool mount.
public struct StatusResult: Codable, Sendable, Equatable {
    public var pid: Int32
    public var mounts: [MountStatus]
    /// Requests refused since prezerod started, by operation: for the hook, starts that fell
    /// back (fail-open) or were refused (`fail_closed`) because prezerod said no.
    public var refused: [String: UInt64]
    /// Memory backends the hook planned to hand over whose hand-over failed, since start.
    public var failedHandovers: UInt64

    /// A status of `mounts`, from the daemon with `pid`.
    public init(pid: Int32, mounts: [MountStatus], refused: [String: UInt64] = [:], failedHandovers: UInt64 = 0) {
        self.pid = pid
        self.mounts = mounts
        self.refused = refused
        self.failedHandovers = failedHandovers
    }

    enum CodingKeys: String, CodingKey {
        case pid, mounts, refused
        case failedHandovers = "failed_handovers"
    }

    /// The counters are read when present, so that a status from an older prezerod still reads.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pid = try c.decode(Int32.self, forKey: .pid)
        mounts = try c.decode([MountStatus].self, forKey: .mounts)
        refused = try c.decodeIfPresent([String: UInt64].self, forKey: .refused) ?? [:]
        failedHandovers = try c.decodeIfPresent(UInt64.self, forKey: .failedHandovers) ?? 0
    }
}
