/// One entry found in a pool state directory at start-up.
public struct ListedFile: Equatable, Sendable {
    public var state: FileState
    public var name: String
    public var isRegular: Bool
    public var links: UInt64
    public var bytes: UInt64
    /// Owned by root with no group or other permissions, as the daemon leaves every pool file.
    public var rootOnly: Bool
    public var inode: UInt64

    /// By default root-only, with an unknown inode (0).
    public init(state: FileState, name: String, isRegular: Bool, links: UInt64, bytes: UInt64,
                rootOnly: Bool = true, inode: UInt64 = 0) {
        self.inode = inode
        self.state = state
        self.name = name
        self.isRegular = isRegular
        self.links = links
        self.bytes = bytes
        self.rootOnly = rootOnly
    }
}

/// What start-up does with a listed file.
public enum RecoveryAction: Equatable, Sendable {
    /// Leave it where it is.
    case keep(FileState, String)
    /// A fill was cut short: finish it (its pages are kernel-zeroed, never handed out).
    case resumeFill(String)
    /// Ours but not worth keeping: its pages go back to the kernel.
    case giveBack(FileState, String)
    /// Not understood, or unsafe to hand out: set aside, never made clean.
    case quarantine(FileState, String, reason: String)
}

/// Rebuilds pool state from the directories alone. Nothing here ever moves a
/// file into `clean/`: the only way there is a fill of a new file. Whether a
/// lease has ended is not decided here but by the reclaimer, with the kernel's
/// word on who still has the file open; no `/proc` scan decides anything.
public enum Recovery {
    /// One action per listed file, each decided from that file alone.
    public static func plan(_ files: [ListedFile]) -> [RecoveryAction] {
        files.map(action)
    }

    static func action(_ f: ListedFile) -> RecoveryAction {
        guard f.isRegular else { return .quarantine(f.state, f.name, reason: "not a regular file") }
        if f.state == .quarantine { return .keep(.quarantine, f.name) }
        if f.state == .leased {
            guard LeasedName(f.name) != nil else { return .quarantine(f.state, f.name, reason: "not a lease name") }
            return .keep(.leased, f.name)
        }
        guard let name = PoolFileName(f.name) else {
            return .quarantine(f.state, f.name, reason: "not a pool file name")
        }
        // Every pool file outside leased/ is root's, mode 0600, with one name: anything else
        // was put there or touched by someone else, and its content cannot be trusted.
        if !f.rootOnly { return .quarantine(f.state, f.name, reason: "not owned by root with mode 0600") }
        if f.links > 1 { return .quarantine(f.state, f.name, reason: "linked elsewhere") }
        switch f.state {
        case .filling:
            return .resumeFill(f.name)
        case .clean:
            // A cut made by a give-back that crashed before its rename: not what its name
            // says, so it goes back to the kernel rather than be trusted.
            if f.bytes != name.bytes { return .giveBack(.clean, f.name) }
            return .keep(.clean, f.name)
        case .leased, .quarantine:
            return .keep(f.state, f.name)
        }
    }
}
