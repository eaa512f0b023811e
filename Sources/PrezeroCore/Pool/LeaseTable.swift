/// The leases by key, with the indexes that keep what a request looks up O(1) in the
/// number of leases: a release by destination finds its lease by inode, a non-root claim
/// checks its claimant's bytes, the hook's release finds a domain's leases by its UUID.
/// Every change goes through the subscript, which keeps the indexes in step.
public struct LeaseTable: Sendable, Equatable {
    public private(set) var byKey: [String: Lease] = [:]
    private var byInode: [InodeKey: String] = [:]
    private var bytesByClaimant: [UInt32: UInt64] = [:]
    private var byGroup: [Substring: Set<String>] = [:]

    struct InodeKey: Hashable, Sendable {
        var mount: Int
        var inode: UInt64
    }

    /// An empty table.
    public init() {}

    public subscript(key: String) -> Lease? {
        get { byKey[key] }
        set {
            if let old = byKey[key] { unindex(old) }
            byKey[key] = newValue
            if let l = newValue { index(l) }
        }
    }

    public var values: Dictionary<String, Lease>.Values { byKey.values }
    public var keys: Dictionary<String, Lease>.Keys { byKey.keys }
    public var count: Int { byKey.count }
    public var isEmpty: Bool { byKey.isEmpty }

    /// The lease whose file is `inode` on mount `mount` (a claim still linking has none yet).
    public func lease(mount: Int, inode: UInt64) -> Lease? {
        byInode[InodeKey(mount: mount, inode: inode)].flatMap { byKey[$0] }
    }

    /// The bytes leased to a uid, on every mount.
    public func bytes(claimant uid: UInt32) -> UInt64 { bytesByClaimant[uid] ?? 0 }

    /// The keys that start with `group` and a dot (the hook's are `<domain uuid>.<backend>`), sorted.
    public func keys(group: String) -> [String] { (byGroup[Substring(group)] ?? []).sorted() }

    static func group(_ key: String) -> Substring? { key.firstIndex(of: ".").map { key[..<$0] } }

    private mutating func index(_ l: Lease) {
        if l.inode != 0 { byInode[InodeKey(mount: l.mount, inode: l.inode)] = l.key }
        bytesByClaimant[l.claimant, default: 0] += l.file.bytes
        if let g = Self.group(l.key) { byGroup[g, default: []].insert(l.key) }
    }

    private mutating func unindex(_ l: Lease) {
        let ik = InodeKey(mount: l.mount, inode: l.inode)
        if l.inode != 0, byInode[ik] == l.key { byInode[ik] = nil }
        let left = (bytesByClaimant[l.claimant] ?? 0) - min(bytesByClaimant[l.claimant] ?? 0, l.file.bytes)
        bytesByClaimant[l.claimant] = left == 0 ? nil : left
        if let g = Self.group(l.key) {
            byGroup[g]?.remove(l.key)
            if byGroup[g]?.isEmpty == true { byGroup[g] = nil }
        }
    }

    /// Equal when the leases are: the indexes follow from them.
    public static func == (a: LeaseTable, b: LeaseTable) -> Bool { a.byKey == b.byKey }
}
