/// The control socket protocol: one JSON object per line each way.
/// Every request carries `v`; a daemon answers a version it does not speak
/// with an error rather than guessing.
public enum ControlProtocol {
    public static let version = 1
    public static let defaultSocket = "/run/prezero/prezerod.sock"

    /// Seconds to wait before asking again after `attempt` (0, 1, …) answers of
    /// `too_many_connections`: 5 ms doubling to 200 ms, each spread by ±50% so that
    /// clients refused together do not come back together.
    public static func retryPause(_ attempt: Int) -> Double {
        min(0.005 * Double(1 << min(attempt, 6)), 0.2) * Double.random(in: 0.5...1.5)
    }

    /// Whether an answer is `too_many_connections`, which asking again may get past.
    public static func isTooManyConnections(_ answer: [UInt8]) -> Bool {
        if case .error(let e)? = try? Wire.decode(Response.self, answer) { e.code == .tooManyConnections } else { false }
    }
}

public enum Operation: String, Codable, Sendable, CaseIterable {
    case status, claim, release, fill, drain, hook
    case makeRoom = "make-room"
}

public struct ClaimRequest: Codable, Sendable, Equatable {
    public var bytes: UInt64
    /// Huge-page size in bytes; nil picks the first pool mount.
    public var pageSize: UInt64?
    /// Allowed host nodes; empty allows every node.
    public var nodes: [Int]
    public var dest: String
    public var uid: UInt32
    public var gid: UInt32
    public var mode: UInt32
    /// nil: the daemon makes one up.
    public var lease: String?

    public init(bytes: UInt64, pageSize: UInt64? = nil, nodes: [Int] = [], dest: String,
                uid: UInt32 = 0, gid: UInt32 = 0, mode: UInt32 = 0o600, lease: String? = nil) {
        self.bytes = bytes
        self.pageSize = pageSize
        self.nodes = nodes
        self.dest = dest
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.lease = lease
    }

    enum CodingKeys: String, CodingKey {
        case bytes, nodes, dest, uid, gid, mode, lease
        case pageSize = "page_size"
    }
}

public struct ReleaseRequest: Codable, Sendable, Equatable {
    public var lease: String?
    public var dest: String?
    public init(lease: String? = nil, dest: String? = nil) {
        self.lease = lease
        self.dest = dest
    }
}

/// Sets targets (fill) or gives pages back (drain). nil mount / node means all.
public struct PoolScope: Codable, Sendable, Equatable {
    public var mount: String?
    public var node: Int?
    /// For fill: the new target per (mount, node); nil keeps the configured one.
    public var target: SizeSpec?
    public init(mount: String? = nil, node: Int? = nil, target: SizeSpec? = nil) {
        self.mount = mount
        self.node = node
        self.target = target
    }
}

public struct MakeRoomRequest: Codable, Sendable, Equatable {
    public var pageSize: UInt64?
    /// Pages needed, per node (JSON object keys are node numbers).
    public var pages: [String: UInt64]
    public init(pageSize: UInt64? = nil, pages: [String: UInt64]) {
        self.pageSize = pageSize
        self.pages = pages
    }
    enum CodingKeys: String, CodingKey {
        case pages
        case pageSize = "page_size"
    }
}

/// A libvirt qemu hook call, forwarded by prezero-hook: its arguments and standard input.
public struct HookRequest: Codable, Sendable, Equatable {
    public var args: [String]
    public var stdin: String
    public init(args: [String], stdin: String) {
        self.args = args
        self.stdin = stdin
    }
}

/// One request: an operation and its payload.
public enum Request: Sendable, Equatable {
    case status
    case claim(ClaimRequest)
    case release(ReleaseRequest)
    /// Sets the targets of the nodes in scope (the configured ones without a target).
    case fill(PoolScope)
    /// Sets the targets in scope to 0 and gives their files back.
    case drain(PoolScope)
    case hook(HookRequest)
    case makeRoom(MakeRoomRequest)

    public var operation: Operation {
        switch self {
        case .status: .status
        case .claim: .claim
        case .release: .release
        case .fill: .fill
        case .drain: .drain
        case .hook: .hook
        case .makeRoom: .makeRoom
        }
    }
}

/// On the wire: `{"v":1,"op":"claim","claim":{…}}`, the payload under its operation's key
/// (`scope` for fill and drain, where it may be left out).
extension Request: Codable {
    enum CodingKeys: String, CodingKey {
        case v, op, claim, release, scope, hook
        case makeRoom = "make_room"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let op = try c.decode(Operation.self, forKey: .op)
        func payload<T: Decodable>(_ key: CodingKeys) throws -> T {
            guard c.contains(key) else {
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(op.rawValue): missing \"\(key.stringValue)\" object"))
            }
            return try c.decode(T.self, forKey: key)
        }
        switch op {
        case .status: self = .status
        case .claim: self = .claim(try payload(.claim))
        case .release: self = .release(try payload(.release))
        case .fill: self = .fill(try c.decodeIfPresent(PoolScope.self, forKey: .scope) ?? PoolScope())
        case .drain: self = .drain(try c.decodeIfPresent(PoolScope.self, forKey: .scope) ?? PoolScope())
        case .hook: self = .hook(try payload(.hook))
        case .makeRoom: self = .makeRoom(try payload(.makeRoom))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ControlProtocol.version, forKey: .v)
        try c.encode(operation, forKey: .op)
        switch self {
        case .status: break
        case .claim(let r): try c.encode(r, forKey: .claim)
        case .release(let r): try c.encode(r, forKey: .release)
        case .fill(let s), .drain(let s): try c.encode(s, forKey: .scope)
        case .hook(let r): try c.encode(r, forKey: .hook)
        case .makeRoom(let r): try c.encode(r, forKey: .makeRoom)
        }
    }
}

/// Paths that come from outside (claim and release destinations, pool mounts) hold no
/// NUL and no control character: a NUL cuts a path short at the kernel, so that
/// `/vms/a\0/../../etc` passes a `..` check on the string and opens `/vms/a`, and the
/// others are no name a VM's memory needs, only a way to confuse a log line.
public enum PathRule {
    /// nil when `path` holds none, else why, in one line that names the fix.
    public static func problem(_ path: String, what: String) -> String? {
        guard let (i, c) = path.unicodeScalars.enumerated().first(where: { $0.element.value < 0x20 || $0.element.value == 0x7f }) else { return nil }
        let hex = String(c.value, radix: 16, uppercase: true)
        return "\(what) '\(printable(path))' holds the control character U+\(String(repeating: "0", count: 4 - hex.count) + hex) at character \(i + 1); use a path without NUL or control characters"
    }
}

extension Request {
    /// The error that refuses a request whose paths break `PathRule`, nil when they keep it.
    public var pathError: ControlError? {
        switch self {
        case .claim(let c):
            PathRule.problem(c.dest, what: "claim: destination").map { ControlError(.badDestination, $0) }
        case .release(let r):
            r.dest.flatMap { PathRule.problem($0, what: "release: destination") }.map { ControlError(.badDestination, $0) }
        case .fill(let s), .drain(let s):
            s.mount.flatMap { PathRule.problem($0, what: "\(operation.rawValue): mount") }.map { ControlError(.badRequest, $0) }
        case .status, .hook, .makeRoom:
            nil
        }
    }
}

/// What the daemon did for a hook call.
public struct HookResult: Codable, Sendable, Equatable {
    /// One line per decision, with its reason (also logged by the daemon).
    public var decisions: [String]
    public var handovers: [ClaimResult]
    public var released: [String]
    /// The backends planned for a hand-over that failed, one line each (`alias: why`).
    /// A miss (no clean file: QEMU allocates, after room was made) is no failure. Under
    /// `fail_closed` the hook refuses a start with any: the domain would run without
    /// what the operator required, however many backends did get theirs.
    public var failed: [String]
    public init(decisions: [String] = [], handovers: [ClaimResult] = [], released: [String] = [], failed: [String] = []) {
        self.decisions = decisions
        self.handovers = handovers
        self.released = released
        self.failed = failed
    }

    enum CodingKeys: String, CodingKey {
        case decisions, handovers, released, failed
    }

    /// `failed` may be absent: a prezerod from before it reported none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        decisions = try c.decode([String].self, forKey: .decisions)
        handovers = try c.decode([ClaimResult].self, forKey: .handovers)
        released = try c.decode([String].self, forKey: .released)
        failed = try c.decodeIfPresent([String].self, forKey: .failed) ?? []
    }
}

/// An error a client can act on: a stable code and a one-line message naming the fix.
public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Codable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let badRequest = Code(rawValue: "bad_request")
        public static let tooLarge = Code(rawValue: "too_large")
        public static let version = Code(rawValue: "unsupported_version")
        public static let forbidden = Code(rawValue: "forbidden")
        /// A non-root caller's leases would pass its `uid_quota`.
        public static let overQuota = Code(rawValue: "over_quota")
        public static let badDestination = Code(rawValue: "bad_destination")
        public static let notFound = Code(rawValue: "not_found")
        public static let noPool = Code(rawValue: "no_pool")
        public static let busy = Code(rawValue: "busy")
        /// Every connection place was taken and the request was not read: nothing was
        /// done, and clients ask again after `ControlProtocol.retryPause`.
        public static let tooManyConnections = Code(rawValue: "too_many_connections")
        public static let system = Code(rawValue: "system")
        /// The client could not reach prezerod (not running, a stale socket, no permission
        /// on the socket). Never sent by the daemon.
        public static let unreachable = Code(rawValue: "unreachable")

        /// The CLI's exit status for an error with this code: 3 when prezerod could not be
        /// reached, 1 when it answered with an error.
        public var exitStatus: Int32 { self == .unreachable ? 3 : 1 }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

public struct ClaimResult: Codable, Sendable, Equatable {
    public var outcome: ClaimOutcome
    /// Empty on a miss.
    public var path: String
    public var node: Int?
    public var bytes: UInt64
    public var pageSize: UInt64
    public var lease: String?

    public init(outcome: ClaimOutcome, path: String, node: Int?, bytes: UInt64, pageSize: UInt64, lease: String?) {
        self.outcome = outcome
        self.path = path
        self.node = node
        self.bytes = bytes
        self.pageSize = pageSize
        self.lease = lease
    }

    enum CodingKeys: String, CodingKey {
        case outcome, path, node, bytes, lease
        case pageSize = "page_size"
    }
}

public struct ReleaseResult: Codable, Sendable, Equatable {
    public var lease: String
    /// True once the kernel granted prezerod a write lease on the file (no other open file
    /// description of it exists anywhere) and its pages went back to the kernel; false while
    /// it stays leased because something still has it open or mapped.
    public var reclaimed: Bool
    public init(lease: String, reclaimed: Bool) {
        self.lease = lease
        self.reclaimed = reclaimed
    }
}

public struct MakeRoomResult: Codable, Sendable, Equatable {
    /// Pages given back to the kernel, per node.
    public var freed: [String: UInt64]
    /// Free pages per node after the call.
    public var free: [String: UInt64]
    public init(freed: [String: UInt64], free: [String: UInt64]) {
        self.freed = freed
        self.free = free
    }
}

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
        case leasedBytes = "leased_bytes", fillingBytes = "filling_bytes"
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

public struct StatusResult: Codable, Sendable, Equatable {
    public var pid: Int32
    public var mounts: [MountStatus]
    public init(pid: Int32, mounts: [MountStatus]) {
        self.pid = pid
        self.mounts = mounts
    }
}

/// One answer: the result of the request's operation (fill and drain answer with the
/// status), or the error that refused it.
public enum Response: Sendable, Equatable {
    case status(StatusResult)
    case claim(ClaimResult)
    case release(ReleaseResult)
    case makeRoom(MakeRoomResult)
    case hook(HookResult)
    case error(ControlError)

    /// What it is, for a message about an answer that does not fit its question.
    public var kind: String {
        switch self {
        case .status: "status"
        case .claim: "claim"
        case .release: "release"
        case .makeRoom: "make-room"
        case .hook: "hook"
        case .error(let e): "error \(e.code.rawValue)"
        }
    }
}

/// On the wire: `{"v":1,"ok":true,"claim":{…}}` or `{"v":1,"ok":false,"error":{…}}`.
extension Response: Codable {
    enum CodingKeys: String, CodingKey {
        case v, ok, error, status, claim, release, hook
        case makeRoom = "make_room"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if !(try c.decode(Bool.self, forKey: .ok)) {
            self = .error(try c.decode(ControlError.self, forKey: .error))
        } else if let r = try c.decodeIfPresent(StatusResult.self, forKey: .status) {
            self = .status(r)
        } else if let r = try c.decodeIfPresent(ClaimResult.self, forKey: .claim) {
            self = .claim(r)
        } else if let r = try c.decodeIfPresent(ReleaseResult.self, forKey: .release) {
            self = .release(r)
        } else if let r = try c.decodeIfPresent(MakeRoomResult.self, forKey: .makeRoom) {
            self = .makeRoom(r)
        } else {
            self = .hook(try c.decode(HookResult.self, forKey: .hook))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ControlProtocol.version, forKey: .v)
        if case .error(let e) = self {
            try c.encode(false, forKey: .ok)
            try c.encode(e, forKey: .error)
            return
        }
        try c.encode(true, forKey: .ok)
        switch self {
        case .status(let r): try c.encode(r, forKey: .status)
        case .claim(let r): try c.encode(r, forKey: .claim)
        case .release(let r): try c.encode(r, forKey: .release)
        case .makeRoom(let r): try c.encode(r, forKey: .makeRoom)
        case .hook(let r): try c.encode(r, forKey: .hook)
        case .error: break
        }
    }
}

/// Encoding and decoding of one line of the protocol.
public enum Wire {
    /// One line: compact JSON with sorted keys and a newline.
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        // Only a non-finite rate could fail to encode; answer with an error rather than a broken line.
        let json = (try? JSONCoding.encode(value))
            ?? (try? JSONCoding.encode(Response.error(ControlError(.system, "prezerod could not encode its answer"))))
            ?? .null
        var bytes = Array(json.text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Indented JSON with sorted keys, for people and for `--json` output.
    public static func pretty<T: Encodable>(_ value: T) throws -> String {
        try JSONCoding.encode(value).prettyText
    }

    /// Decodes a request line, turning every failure into a ControlError that says what was wrong.
    public static func decodeRequest(_ line: [UInt8]) -> Result<Request, ControlError> {
        guard let json = try? JSON(parsing: line), case .object(let members) = json else {
            return .failure(ControlError(.badRequest, "request is not a JSON object; send one JSON object per line"))
        }
        guard let v = members["v"], v != .null else {
            return .failure(ControlError(.badRequest, "request has no protocol version \"v\"; send \"v\":\(ControlProtocol.version)"))
        }
        guard case .number(let n) = v else {
            return .failure(ControlError(.badRequest, "protocol version \"v\" is \(v.kind), not a number; send \"v\":\(ControlProtocol.version)"))
        }
        guard Int(n) == ControlProtocol.version else {
            return .failure(ControlError(.version, "protocol version \(n) is not supported; this daemon speaks \(ControlProtocol.version)"))
        }
        let request: Request
        do {
            request = try JSONCoding.decode(Request.self, from: json)
        } catch {
            return .failure(ControlError(.badRequest, "malformed request: \(describe(error))"))
        }
        if let e = request.pathError { return .failure(e) }
        return .success(request)
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ line: [UInt8]) throws -> T {
        try JSONCoding.decode(type, from: try JSON(parsing: line))
    }

    /// One line for a decoding error, naming the field.
    public static func describe(_ error: any Error) -> String { JSONCoding.describe(error) }
}
