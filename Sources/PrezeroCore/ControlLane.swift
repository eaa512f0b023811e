import PrezeroProtocol

/// The handler lanes of prezerod's control server. Each lane has a small fixed number of
/// handler threads and its own queue, so a request waits only behind requests of its own
/// lane: a claim never waits on a make-room, a drain or a hook's plan, and a release that
/// waits out its file's take-back holds no claim up.
public enum ControlLane: String, CaseIterable, Sendable {
    /// Status and claims: short, under the pool's locks only.
    case quick
    /// Releases: each may wait (up to a few seconds) for its own lease's take-back.
    case release
    /// libvirt's hook calls: a domain's plan, its claims, and make-room on a miss.
    case hook
    /// Make-room, fill and drain: each may give back or wait on many files.
    case admin

    /// The lane that handles `op`.
    public init(_ op: Operation) {
        switch op {
        case .status, .claim: self = .quick
        case .release: self = .release
        case .hook: self = .hook
        case .makeRoom, .fill, .drain: self = .admin
        }
    }

    /// Handler threads: enough that a boot storm's hooks (up to a connection limit of 64)
    /// run a quarter at a time while the pool's own locks order the rest.
    public var handlers: Int {
        switch self {
        case .quick: 4
        case .release: 4
        case .hook: 16
        case .admin: 2
        }
    }
}
