import PrezeroProtocol

/// prezerod's configuration. Every key has an embedded default, so the daemon
/// runs with no file; the README documents each key. The YAML file is read by
/// PrezeroConfigYAML (`Config.parse(yaml:)`): this target needs no Foundation.
public struct Config: Sendable, Equatable {
    public var socket = ControlProtocol.defaultSocket
    public var stateDir = "/run/prezero"
    /// Name of the root-only pool directory created on each mount.
    public var poolDir = ".prezero"
    /// Pool mounts; empty means the ones libvirt is configured to use (qemu.conf's
    /// hugetlbfs_mount and the mount under memory_backing_dir), never every mount on the host.
    public var mounts: [MountConfig] = []
    /// Defaults for every mount and node.
    public var target: SizeSpec = .percent(50)
    public var minFree: SizeSpec = .percent(10)
    public var fileSize: SizeSpec = .bytes(1 << 30)
    public var fillChunk: SizeSpec = .bytes(256 << 20)
    /// Bytes per second per node that fills may zero; 0 means unlimited.
    public var fillBandwidth: SizeSpec = .bytes(0)
    /// Files filled at once on each (mount, node), each by its own pinned worker; nil: half
    /// the node's CPUs, 1 to 16 (see `FillWorkers.count`). One file's fallocate runs at one
    /// file's rate, so a node's refill scales with its files. `fill_bandwidth` is their total.
    public var fillWorkers: Int?
    /// Where claims may put files; empty means anywhere on a pool mount outside the pool directory.
    public var allowedDirs: [String] = []
    /// Peers allowed besides root: by uid, or by primary or supplementary group.
    public var allowedUids: [UInt32] = []
    public var allowedGids: [UInt32] = []
    /// The control socket's group (a name, or +GID): the socket is then 0660 root:group, and
    /// only its members reach it. Required when allowed_uids or allowed_gids is set.
    public var socketGroup: String?
    /// The most a non-root caller may hold in leases at once, across every pool mount; a
    /// percentage is of the huge pages of all pool mounts together.
    public var uidQuota: SizeSpec = .percent(25)
    public var maxRequestBytes = 1 << 20
    public var requestTimeoutMs = 5000
    public var learnedShapes = 8
    public var reclaimIntervalMs = 500
    public var monitorIntervalMs = 200
    /// After make-room, the freed pages are kept free this long for the launch that asked.
    public var makeRoomHoldS = 30
    /// After a claim, the node's worker waits this long before refilling, so that the
    /// launch that claimed is not slowed by the refill's page zeroing.
    public var refillDelayMs = 2000
    /// libvirt's qemu.conf, read at each hook call for memory_backing_dir, user and group.
    public var qemuConf = "/etc/libvirt/qemu.conf"
    /// libvirt's QEMU capabilities cache, read at each hook call for libvirt's version
    /// (`<selfvers>`) and a machine type's RAM id.
    public var libvirtCapabilitiesCache = "/var/cache/libvirt/qemu/capabilities"
    /// Where prezerod writes its metrics for node_exporter's textfile collector; nil: nowhere.
    public var metricsTextfile: String?
    public var metricsIntervalMs = 15000

    /// Every key at its default: the daemon runs with no config file.
    public init() {}
}

/// What is wrong in a config file, in one line that names the key and the fix.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    @OneLine public var message: String
    public var description: String { message }
    /// The message is kept to one bounded line (see `OneLine`).
    public init(message: String) { self.message = message }
}

/// One pool mount from `mounts:`: its path, and what it sets apart from the defaults.
public struct MountConfig: Sendable, Equatable, Codable {
    public var path: String
    public var target: SizeSpec?
    public var minFree: SizeSpec?
    public var fileSize: SizeSpec?
    /// Per-node target overrides, keyed by node number.
    public var nodes: [String: SizeSpec]?

    /// A mount whose unset settings take the config's defaults.
    public init(path: String, target: SizeSpec? = nil, minFree: SizeSpec? = nil,
                fileSize: SizeSpec? = nil, nodes: [String: SizeSpec]? = nil) {
        self.path = path
        self.target = target
        self.minFree = minFree
        self.fileSize = fileSize
        self.nodes = nodes
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, target, nodes
        case minFree = "min_free", fileSize = "file_size"
    }

    /// An unknown key is an error, so a misspelt setting is not silently ignored.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        target = try c.decodeIfPresent(SizeSpec.self, forKey: .target)
        minFree = try c.decodeIfPresent(SizeSpec.self, forKey: .minFree)
        fileSize = try c.decodeIfPresent(SizeSpec.self, forKey: .fileSize)
        nodes = try c.decodeIfPresent([String: SizeSpec].self, forKey: .nodes)
    }
}

extension Config: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case socket, mounts, target
        case stateDir = "state_dir", poolDir = "pool_dir", minFree = "min_free", fileSize = "file_size"
        case fillChunk = "fill_chunk", fillBandwidth = "fill_bandwidth", fillWorkers = "fill_workers", allowedDirs = "allowed_dirs", allowedUids = "allowed_uids"
        case allowedGids = "allowed_gids", socketGroup = "socket_group", uidQuota = "uid_quota", maxRequestBytes = "max_request_bytes"
        case requestTimeoutMs = "request_timeout_ms", learnedShapes = "learned_shapes"
        case reclaimIntervalMs = "reclaim_interval_ms", monitorIntervalMs = "monitor_interval_ms"
        case makeRoomHoldS = "make_room_hold_s", refillDelayMs = "refill_delay_ms", qemuConf = "qemu_conf"
        case libvirtCapabilitiesCache = "libvirt_capabilities_cache"
        case metricsTextfile = "metrics_textfile", metricsIntervalMs = "metrics_interval_ms"
    }

    /// Keys of earlier versions that are gone, and what replaced them.
    static let removedKeys = [
        "scrub": "scrub: was removed: a released file is no longer zeroed in place for the next tenant; its pages go back to the kernel and the pool fills a new file (fill_bandwidth is the budget); delete the scrub: section",
    ]

    /// Keys left out keep their defaults; a key that is unknown or removed, or a value the
    /// daemon does not take, is a `ConfigError` that names the key and the fix.
    public init(from decoder: any Decoder) throws {
        let any = try decoder.container(keyedBy: AnyKey.self)
        for key in any.allKeys { if let why = Self.removedKeys[key.stringValue] { throw ConfigError(message: why) } }
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var d = Config()
        func opt<T: Decodable>(_ key: CodingKeys, _ into: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { into = v }
        }
        try opt(.socket, &d.socket)
        try opt(.stateDir, &d.stateDir)
        try opt(.poolDir, &d.poolDir)
        try opt(.mounts, &d.mounts)
        try opt(.target, &d.target)
        try opt(.minFree, &d.minFree)
        try opt(.fileSize, &d.fileSize)
        try opt(.fillChunk, &d.fillChunk)
        try opt(.fillBandwidth, &d.fillBandwidth)
        d.fillWorkers = try c.decodeIfPresent(Int.self, forKey: .fillWorkers)
        if let n = d.fillWorkers, !(1...FillWorkers.most).contains(n) {
            throw ConfigError(message: "fill_workers: \(n) is out of range; use 1 to \(FillWorkers.most), or leave it out for half the node's CPUs")
        }
        try opt(.allowedDirs, &d.allowedDirs)
        try opt(.allowedUids, &d.allowedUids)
        try opt(.allowedGids, &d.allowedGids)
        d.socketGroup = try c.decodeIfPresent(String.self, forKey: .socketGroup)
        try opt(.uidQuota, &d.uidQuota)
        try opt(.maxRequestBytes, &d.maxRequestBytes)
        try opt(.requestTimeoutMs, &d.requestTimeoutMs)
        try opt(.learnedShapes, &d.learnedShapes)
        try opt(.reclaimIntervalMs, &d.reclaimIntervalMs)
        try opt(.monitorIntervalMs, &d.monitorIntervalMs)
        try opt(.makeRoomHoldS, &d.makeRoomHoldS)
        try opt(.refillDelayMs, &d.refillDelayMs)
        try opt(.qemuConf, &d.qemuConf)
        try opt(.libvirtCapabilitiesCache, &d.libvirtCapabilitiesCache)
        d.metricsTextfile = try c.decodeIfPresent(String.self, forKey: .metricsTextfile)
        try opt(.metricsIntervalMs, &d.metricsIntervalMs)
        if let t = d.metricsTextfile, !t.hasPrefix("/") || t.hasSuffix("/") {
            throw ConfigError(message: "metrics_textfile: '\(t)' must be an absolute file path, e.g. /var/lib/prometheus/node-exporter/prezero.prom")
        }
        if d.metricsIntervalMs < 100 {
            throw ConfigError(message: "metrics_interval_ms: \(d.metricsIntervalMs) is too short; use at least 100")
        }
        if d.poolDir.isEmpty || d.poolDir.contains("/") || d.poolDir == "." || d.poolDir.hasPrefix("..") {
            throw ConfigError(message: "pool_dir: '\(d.poolDir)' must be a plain directory name, e.g. .prezero")
        }
        if let g = d.socketGroup, g.isEmpty || g.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            throw ConfigError(message: "socket_group: '\(g)' must be a group name or +GID, e.g. prezero")
        }
        if d.socketGroup == nil, !d.allowedUids.isEmpty || !d.allowedGids.isEmpty {
            throw ConfigError(message: "allowed_uids/allowed_gids admit other users, but socket_group is not set: set socket_group to a group those users are in (the socket is 0660 root:GROUP; it is never open to all)")
        }
        if d.maxRequestBytes < 1024 {
            throw ConfigError(message: "max_request_bytes: \(d.maxRequestBytes) is too small; use at least 1024")
        }
        self = d
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ decoder: any Decoder, _: K.Type) throws {
    let known = Set(K.allCases.map(\.stringValue))
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys where !known.contains(key.stringValue) {
        let at = decoder.codingPath.map(\.stringValue).joined(separator: ".")
        // The nearest known key first: the whole list can pass the one line's bound.
        let near = known.min { editDistance($0, key.stringValue) < editDistance($1, key.stringValue) }
        let hint = near.map { editDistance($0, key.stringValue) <= 3 ? " (did you mean '\($0)'?)" : "" } ?? ""
        throw ConfigError(message: "unknown key '\(key.stringValue)'\(at.isEmpty ? "" : " in \(at)")\(hint); known keys: \(known.sorted().joined(separator: ", "))")
    }
}

/// Levenshtein distance between two keys, for a misspelt key's suggestion.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.utf8), y = Array(b.utf8)
    var row = Array(0...y.count)
    for i in 1...max(x.count, 1) where !x.isEmpty {
        var prev = row[0]
        row[0] = i
        for j in stride(from: 1, through: y.count, by: 1) {
            let cur = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (x[i - 1] == y[j - 1] ? 0 : 1))
            prev = cur
        }
    }
    return x.isEmpty ? y.count : row[y.count]
}
