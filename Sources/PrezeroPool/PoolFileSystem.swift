import PrezeroCore

/// Everything the pool engine does to and learns from the host, as one table:
/// the real one (`HostFileSystem`, over PrezeroSys) and an in-memory model (the
/// simulation's) implement it.
public protocol PoolFileSystem: Sendable {
    /// Performs one effect. `link` returns the inode it linked; the others nil.
    func perform(_ e: Effect) throws(EffectError) -> UInt64?
    /// A pool file's status; nil when it does not exist.
    func status(_ f: FileRef) throws(EffectError) -> FileInfo?
    /// Every entry of a mount's state directories, as recovery sees it.
    func listing(mount: Int) throws(EffectError) -> [ListedFile]
    /// The inodes any process holds open or mapped on a mount.
    func holders(mount: Int) -> Holders
    /// A node's free and total huge pages of the mount's size.
    func counters(_ k: NodeKey) -> NodeCounters
    /// Where a lease's first link went, as the journal remembers it.
    func journal(_ lease: String) -> String?
}
