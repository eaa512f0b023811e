import PrezeroProtocol

/// Who sent a request, as the kernel saw the peer when it connected: `SO_PEERCRED`
/// (pid, uid, gid) and `SO_PEERGROUPS` (its supplementary groups).
public struct Caller: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    /// A caller from its peer credentials; `groups` are its supplementary groups.
    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// prezerod itself, and requests made inside it (the hook's claims, the bench).
    public static let root = Caller(pid: 0, uid: 0, gid: 0)

    public var isRoot: Bool { uid == 0 }
    public var description: String { "uid \(uid) (pid \(pid))" }
}

/// What each kind of caller may do. Root may do everything; any other admitted uid works
/// only on its own files and leases, within its quota. Pure: the daemon applies these.
public enum CallerPolicy {
    /// The most a non-root caller's file may allow: read and write for its owner.
    public static let maxMode: UInt32 = 0o600

    /// Whether a peer may use the socket at all: root, a uid in `allowed_uids`, or a peer
    /// whose primary or supplementary group is in `allowed_gids`.
    public static func admitted(_ c: Caller, allowedUids: [UInt32], allowedGids: [UInt32]) -> Bool {
        c.isRoot || allowedUids.contains(c.uid) || allowedGids.contains(c.gid) || c.groups.contains(where: allowedGids.contains)
    }

    /// Operations that act on the whole pool or speak for libvirt: root's alone.
    public static func check(_ op: Operation, by c: Caller) throws(ControlError) {
        guard !c.isRoot else { return }
        let why: String
        switch op {
        case .status, .claim, .release: return
        case .hook: why = "hook calls speak for libvirt"
        case .fill, .drain: why = "\(op.rawValue) changes the whole pool's target"
        case .makeRoom: why = "make-room gives back the whole pool's pages"
        }
        throw ControlError(.forbidden, "\(op.rawValue) is root's alone (\(why)); uid \(c.uid) may only claim, release its own leases, and ask status")
    }

    /// The claim as prezerod carries it out for `c`: a non-root caller's file is always its
    /// own (the request's uid and gid are replaced by the caller's), and a mode that gives
    /// more than read and write to its owner is refused rather than narrowed, so that no
    /// caller gets a file with other permissions than it asked for.
    public static func claim(_ r: ClaimRequest, by c: Caller) throws(ControlError) -> ClaimRequest {
        guard !c.isRoot else { return r }
        guard r.mode & ~maxMode == 0 else {
            throw ControlError(.forbidden, "claim: mode \(String(r.mode, radix: 8)) is more than uid \(c.uid) may ask for; use at most 600 (the file is only ever its owner's)")
        }
        var own = r
        own.uid = c.uid
        own.gid = c.gid
        return own
    }

    /// A lease may be released by the uid that claimed it, or by root.
    public static func checkRelease(_ lease: String, claimant: UInt32, by c: Caller) throws(ControlError) {
        guard c.isRoot || c.uid == claimant else {
            throw ControlError(.forbidden, "release: lease '\(lease)' was claimed by another uid; uid \(c.uid) may release only its own leases")
        }
    }

    /// A claim of `bytes` by `uid`, which already holds `leased` bytes in leases (released
    /// ones included until their pages are back), against its `quota`. Root has none.
    public static func checkQuota(leased: UInt64, claim bytes: UInt64, quota: UInt64, uid: UInt32) throws(ControlError) {
        let (total, over) = leased.addingReportingOverflow(bytes)
        guard over || total > quota else { return }
        throw ControlError(.overQuota, "claim: uid \(uid) holds \(ByteSize.format(leased)) in leases; \(ByteSize.format(bytes)) more is over its uid_quota of \(ByteSize.format(quota)); release a lease first or raise uid_quota in the prezerod config")
    }
}

extension PoolState {
    /// Bytes in the leases `uid` claimed, released ones included until their pages are back.
    public func leasedBytes(claimant uid: UInt32) -> UInt64 {
        leases.bytes(claimant: uid)
    }
}

/// What the lease journal remembers of a lease across restarts: where its first link went
/// and who claimed it. One file per lease in `<state_dir>/leases`, written as a JSON object;
/// a file from before the claimant was kept holds the destination alone, and is read as
/// root's (only root may release it, and it counts against no quota).
public struct LeaseRecord: Sendable, Equatable {
    public var dest: String?
    public var claimant: UInt32

    /// A record of `dest` claimed by `claimant` (root by default).
    public init(dest: String?, claimant: UInt32 = 0) {
        self.dest = dest
        self.claimant = claimant
    }

    public var text: String {
        var o: [String: JSON] = ["claimant": .number(String(claimant))]
        if let dest { o["dest"] = .string(dest) }
        return JSON.object(o).text
    }

    /// nil for text that is neither form (an empty or mangled file): nothing is known.
    public static func parse(_ text: String) -> LeaseRecord? {
        guard text.hasPrefix("{") else { return text.hasPrefix("/") ? LeaseRecord(dest: text, claimant: 0) : nil }
        guard case .object(let o)? = try? JSON(parsing: text) else { return nil }
        guard case .number(let n)? = o["claimant"], let claimant = UInt32(n) else { return nil }
        var dest: String?
        if case .string(let d)? = o["dest"] { dest = d }
        return LeaseRecord(dest: dest, claimant: claimant)
    }
}
