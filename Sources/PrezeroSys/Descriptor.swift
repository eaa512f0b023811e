import Glibc
import PrezeroCShims

/// An owned file descriptor, closed when the last reference goes.
public final class Descriptor: Sendable {
    public let raw: Int32
    /// What it was opened from, for error messages.
    public let label: String

    /// Takes ownership of `raw`, an open descriptor: it is closed when the last reference goes.
    public init(_ raw: Int32, label: String) {
        self.raw = raw
        self.label = label
    }

    deinit { close(raw) }
}

/// File status, reduced to what prezero uses.
public struct FileStatus: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    public var links: UInt64
    public var size: UInt64
    /// Bytes backed by pages (st_blocks): on hugetlbfs, whole huge pages; less than `size` after a hole punch.
    public var allocated: UInt64
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Last status change (ctime), seconds since the epoch: when the file was written, renamed or chmod-ed.
    public var changedAt: Double

    init(_ s: stat) {
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        links = UInt64(s.st_nlink)
        size = UInt64(s.st_size)
        allocated = UInt64(s.st_blocks) * 512
        mode = UInt32(s.st_mode)
        uid = s.st_uid
        gid = s.st_gid
        changedAt = Double(s.st_ctim.tv_sec) + Double(s.st_ctim.tv_nsec) / 1e9
    }

    public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isSymlink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    public var permissions: UInt32 { mode & 0o7777 }
}
