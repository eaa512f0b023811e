import PrezeroCore

/// Everything the pool engine does to and learns from the host, as one table:
/// the real one (`HostFileSystem`, over PrezeroSys) and an in-memory model (the
/// simulation's) implement it.
public protocol PoolFileSystem: Sendable {
    /// Performs one effect, and says what it observed (`link`, `takeBack`); nil for the others.
    func perform(_ e: Effect) throws(EffectError) -> Observed?
    /// A pool file's status; nil when it does not exist.
    func status(_ f: FileRef) throws(EffectError) -> FileInfo?
    /// Every entry of a mount's state directories, as recovery sees it.
    func listing(mount: Int) throws(EffectError) -> [ListedFile]
    /// The inode a lease's destination path names on a mount now; nil when it names nothing there.
    func destinationInode(_ path: String, mount: Int) -> UInt64?
    /// A node's pages in use (total less free), and of those the pages of `files`, read
    /// together with the node's fills paused. The rest is used outside the pool.
    func usage(_ k: NodeKey, files: [FileRef]) -> (inUse: UInt64, inFiles: UInt64)
    /// A node's free and total huge pages of the mount's size.
    func counters(_ k: NodeKey) -> NodeCounters
    /// Where a lease's first link went and who claimed it, as the journal remembers it.
    func journal(_ lease: String) -> LeaseRecord?
    /// The held pages journalled for a mount: (`Lease.heldID`, node, bytes).
    func heldJournal(mount: Int) -> [(id: String, node: Int, bytes: UInt64)]
}
