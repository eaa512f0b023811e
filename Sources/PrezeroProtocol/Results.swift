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
    /// Nothing done by default; the hook handler adds as it goes.
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
    /// A stable error code, sent as its string (`bad_request`, `busy`): clients act on it, not on the message.
    public struct Code: RawRepresentable, Codable, Sendable, Hashable {
        public var rawValue: String
        /// Any string is kept, so a code a newer prezerod sends still reads.
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

    /// An error with its code and a one-line message that names the fix.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// What a claim got: its outcome and, unless it was a miss, the file's path, node and lease key.
public struct ClaimResult: Codable, Sendable, Equatable {
    public var outcome: ClaimOutcome
    /// Empty on a miss.
    public var path: String
    public var node: Int?
    public var bytes: UInt64
    public var pageSize: UInt64
    public var lease: String?

    /// On a miss, `path` is empty and `node` and `lease` are nil.
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

/// What a release did: the lease it ended, and whether the file's pages are back already.
public struct ReleaseResult: Codable, Sendable, Equatable {
    public var lease: String
    /// True once the kernel granted prezerod a write lease on the file (no other open file
    /// description of it exists anywhere) and its pages went back to the kernel; false while
    /// it stays leased because something still has it open or mapped.
    public var reclaimed: Bool
    /// A result for `lease`; see `reclaimed`.
    public init(lease: String, reclaimed: Bool) {
        self.lease = lease
        self.reclaimed = reclaimed
    }
}

/// What a make-room did, per node (keys are node numbers, as in the request), in pages.
public struct MakeRoomResult: Codable, Sendable, Equatable {
    /// Pages given back to the kernel, per node.
    public var freed: [String: UInt64]
    /// Free pages per node after the call.
    public var free: [String: UInt64]
    /// A result with the pages freed and the pages free afterwards, per node.
    public init(freed: [String: UInt64], free: [String: UInt64]) {
        self.freed = freed
        self.free = free
    }
}
