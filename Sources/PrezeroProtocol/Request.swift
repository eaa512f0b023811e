/// What a request asks for, sent as `op`; callers' rights and handler lanes are decided by it.
public enum Operation: String, Codable, Sendable, CaseIterable {
    case status, claim, release, fill, drain, hook
    case makeRoom = "make-room"
}

/// Asks for a clean file of `bytes`, linked at `dest` and owned by `uid`:`gid` with `mode`.
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

    /// By default any node, the first pool mount, root's file at 0600, and a lease key the daemon makes up.
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

/// Ends a lease, named by its key or found by the file at its destination.
public struct ReleaseRequest: Codable, Sendable, Equatable {
    public var lease: String?
    public var dest: String?
    /// Give one: `lease` is used when both are set, and a request with neither is refused.
    public init(lease: String? = nil, dest: String? = nil) {
        self.lease = lease
        self.dest = dest
    }
}

/// Sets targets (fill) or gives pages back (drain). nil mount / node means all.
public struct PoolScope: Codable, Sendable, Equatable {
    public var mount: String?
    public var node: Int?
    /// For fill: the new target per (mount, node); nil goes back to the configured one.
    public var target: SizeSpec?
    /// By default every mount and node; a nil `target` means the configured one.
    public init(mount: String? = nil, node: Int? = nil, target: SizeSpec? = nil) {
        self.mount = mount
        self.node = node
        self.target = target
    }
}

/// Asks prezerod to give clean files back until each node has `pages` free, for a backend
/// that takes huge pages itself. `pageSize` nil picks the first pool mount.
public struct MakeRoomRequest: Codable, Sendable, Equatable {
    public var pageSize: UInt64?
    /// Pages needed, per node (JSON object keys are node numbers).
    public var pages: [String: UInt64]
    /// A request for `pages` free pages per node, of `pageSize` (nil: the first pool mount's).
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
    /// The hook's arguments as libvirt gave them, and the domain XML it read on standard input.
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

    /// Reads `op`, then its payload; a payload that is missing is an error naming it, except
    /// fill's and drain's `scope`, which defaults to everything.
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

    /// Writes `v`, `op` and the payload under its key.
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
