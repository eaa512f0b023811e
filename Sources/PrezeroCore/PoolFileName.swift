/// The states a pool file can be in. Each is a directory under the pool root;
/// a state change is a rename between them. (Pools of earlier versions also had
/// `dirty/` and `scrubbing/`; `PoolDirectory` gives what it finds there back to the kernel.)
public enum FileState: String, CaseIterable, Sendable, Codable {
    /// Being fallocated by a node worker (kernel-zeroed pages only).
    case filling
    /// Every byte is zero: the only state a file is handed out from.
    case clean
    /// Second link of a file handed to a VM. A released one is taken back from here:
    /// its pages punched out once the kernel says no one else has it open, its name removed.
    /// No file ever leaves leased/ for another state: an inode serves one tenant only.
    case leased
    /// Not ours or not understood: kept aside, never handed out.
    case quarantine
}

/// `n<node>-<bytes>-<seq>`: the name of a pool file in every state but leased.
public struct PoolFileName: Hashable, Sendable, CustomStringConvertible {
    public var node: Int
    public var bytes: UInt64
    public var seq: UInt64

    /// The name of a file of `bytes` on `node`; `seq` makes it unique in the pool.
    public init(node: Int, bytes: UInt64, seq: UInt64) {
        self.node = node
        self.bytes = bytes
        self.seq = seq
    }

    /// Parses `n<node>-<bytes>-<seq>`, spelt exactly as `description` writes it; nil for any other name.
    public init?(_ name: String) {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].first == "n",
              let node = Int(parts[0].dropFirst()), node >= 0, node < 4096,
              parts[1].allSatisfy(\.isNumber), let bytes = UInt64(parts[1]),
              parts[2].allSatisfy(\.isNumber), let seq = UInt64(parts[2])
        else { return nil }
        self.init(node: node, bytes: bytes, seq: seq)
        // One spelling per file: `n01-…` or `n0-02-…` is not ours.
        guard description == name else { return nil }
    }

    public var description: String { "n\(node)-\(bytes)-\(seq)" }

    /// The pool file a directory entry names in any state: `n<node>-<bytes>-<seq>`, or a
    /// leased file's `<lease>~n<node>-<bytes>-<seq>`.
    public init?(entry name: String) {
        guard let f = PoolFileName(name) ?? LeasedName(name)?.file else { return nil }
        self = f
    }

    /// The same file with a new size (after truncation, extension or a partial give-back).
    public func resized(_ bytes: UInt64) -> PoolFileName {
        PoolFileName(node: node, bytes: bytes, seq: seq)
    }
}

/// A lease key names a hand-over (`<domain uuid>.<alias>`, or one the caller picks).
/// It becomes part of a file name, so it is held to a safe alphabet.
public enum LeaseKey {
    public static let maxLength = 160

    /// nil when valid, else why not.
    public static func problem(_ key: String) -> String? {
        if key.isEmpty { return "lease key is empty" }
        if key.utf8.count > maxLength { return "lease key is longer than \(maxLength) bytes" }
        if key == "." || key == ".." || key.hasPrefix(".") { return "lease key may not start with '.'" }
        let ok = key.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
                || c == "-" || c == "_" || c == "." || c == ":" || c == "@"
        }
        return ok ? nil : "lease key '\(key)' may hold only letters, digits and - _ . : @"
    }
}

/// `<lease key>~<pool file name>`: the second link of a leased file.
public struct LeasedName: Hashable, Sendable, CustomStringConvertible {
    public var key: String
    public var file: PoolFileName

    /// The leased name of `file` under lease `key`.
    public init(key: String, file: PoolFileName) {
        self.key = key
        self.file = file
    }

    /// Parses `<lease key>~<pool file name>`, split at the last `~`; nil unless both parts are valid.
    public init?(_ name: String) {
        guard let tilde = name.lastIndex(of: "~") else { return nil }
        let key = String(name[..<tilde])
        guard LeaseKey.problem(key) == nil, let file = PoolFileName(String(name[name.index(after: tilde)...]))
        else { return nil }
        self.init(key: key, file: file)
    }

    public var description: String { "\(key)~\(file)" }
}
