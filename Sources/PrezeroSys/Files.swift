import Glibc
import PrezeroCShims

/// Directory-relative file operations. Every path here is one name inside a
/// directory descriptor and never follows a symlink.
public enum Files {
    static func validName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/")
    }

    static func requireName(_ call: String, _ name: String) throws(SysError) {
        guard validName(name) else { throw SysError(call, name, errno: EINVAL) }
    }

    /// Opens a directory by absolute path, refusing a symlink in any component.
    /// The corresponding C calls are `openat` with `O_NOFOLLOW | O_DIRECTORY`, one per component.
    public static func openDirectory(path: String, pathOnly: Bool = false) throws(SysError) -> Descriptor {
        guard path.hasPrefix("/") else { throw SysError("open", path, errno: EINVAL) }
        let parts = path.split(separator: "/").map(String.init)
        var fd = Descriptor(try check("open", "/") { pz_openat(AT_FDCWD, "/", O_RDONLY | pz_flag_directory() | pz_flag_cloexec(), 0) }, label: "/")
        for p in parts {
            guard validName(p) else { throw SysError("open", path, errno: EINVAL) }
            fd = try openDirectory(in: fd, name: p, pathOnly: pathOnly, label: path)
        }
        return fd
    }

    /// Opens the directory `name` inside `dir`, creating it with `createMode` when given.
    /// The corresponding C functions are `mkdirat` and `openat` with `O_NOFOLLOW | O_DIRECTORY`.
    public static func openDirectory(in dir: Descriptor, name: String, pathOnly: Bool = false,
                                     createMode: UInt32? = nil, label: String? = nil) throws(SysError) -> Descriptor {
        try requireName("open", name)
        let shown = label ?? "\(dir.label)/\(name)"
        if let mode = createMode {
            if mkdirat(dir.raw, name, mode_t(mode)) != 0, errno != EEXIST { throw SysError("mkdir", shown) }
        }
        let access = pathOnly ? pz_flag_path() : O_RDONLY
        let raw = try check("open", shown) {
            pz_openat(dir.raw, name, access | pz_flag_directory() | pz_flag_nofollow() | pz_flag_cloexec(), 0)
        }
        return Descriptor(raw, label: shown)
    }

    /// Opens a regular file inside `dir` for reading and writing; `create` makes a new one (never an existing one).
    /// `inheritable` leaves the descriptor open across exec, for a child to use. `nonBlocking`:
    /// a file someone else holds a lease on fails at once with EAGAIN (the kernel starts
    /// breaking the lease) instead of sleeping up to `lease-break-time` (45 s by default).
    /// The corresponding C function is `openat` with `O_NOFOLLOW` (and `O_CREAT | O_EXCL` for `create`).
    public static func openFile(in dir: Descriptor, name: String, create: Bool = false, mode: UInt32 = 0o600,
                                inheritable: Bool = false, nonBlocking: Bool = false) throws(SysError) -> Descriptor {
        try requireName("open", name)
        let flags = O_RDWR | pz_flag_nofollow() | (inheritable ? 0 : pz_flag_cloexec()) | (create ? pz_flag_creat_excl() : 0)
            | (nonBlocking ? O_NONBLOCK : 0)
        let raw = try check("open", "\(dir.label)/\(name)") { pz_openat(dir.raw, name, flags, mode_t(mode)) }
        return Descriptor(raw, label: "\(dir.label)/\(name)")
    }

    /// The corresponding C function is `fstatat` with `AT_SYMLINK_NOFOLLOW`; nil if there is no such name.
    public static func status(in dir: Descriptor, name: String) throws(SysError) -> FileStatus? {
        try requireName("stat", name)
        var s = stat()
        if fstatat(dir.raw, name, &s, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw SysError("stat", "\(dir.label)/\(name)")
        }
        return FileStatus(s)
    }

    /// The corresponding C function is `fstat`.
    public static func status(_ fd: Descriptor) throws(SysError) -> FileStatus {
        var s = stat()
        try check("stat", fd.label) { fstat(fd.raw, &s) }
        return FileStatus(s)
    }

    /// The corresponding C function is `stat` (follows links; for /proc/PID/fd entries).
    public static func status(followingPath path: String) -> FileStatus? {
        var s = stat()
        return stat(path, &s) == 0 ? FileStatus(s) : nil
    }

    /// Renames without ever replacing an existing name. The corresponding C function is `renameat2(RENAME_NOREPLACE)`.
    public static func rename(in from: Descriptor, _ name: String, to: Descriptor, _ newName: String) throws(SysError) {
        try requireName("rename", name)
        try requireName("rename", newName)
        try check("rename", "\(from.label)/\(name) to \(to.label)/\(newName)") {
            pz_rename_noreplace(from.raw, name, to.raw, newName)
        }
    }

    /// A second name for an open file, `name` in `dir`, made through `/proc/self/fd` so that
    /// the source is this very inode and no lookup of its pool directory is needed (a caller
    /// the link is made as may not search that directory). The corresponding C function is
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)`; fails with EEXIST
    /// if anything, a symlink included, has the name.
    public static func link(_ file: Descriptor, to dir: Descriptor, _ name: String) throws(SysError) {
        try requireName("link", name)
        try check("link", "\(file.label) to \(dir.label)/\(name)") {
            linkat(AT_FDCWD, "/proc/self/fd/\(file.raw)", dir.raw, name, AT_SYMLINK_FOLLOW)
        }
    }

    /// The target of a symlink. The corresponding C function is `readlink`.
    public static func readLink(_ path: String) -> Result<String, SysError> {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { readlink(path, $0, b.count) }
        }
        guard n >= 0 else { return .failure(SysError("readlink", path)) }
        return .success(String(decoding: buf[0..<n], as: UTF8.self))
    }

    /// The corresponding C function is `unlinkat`.
    public static func unlink(in dir: Descriptor, _ name: String) throws(SysError) {
        try requireName("unlink", name)
        try check("unlink", "\(dir.label)/\(name)") { unlinkat(dir.raw, name, 0) }
    }

    /// Names in a directory, without `.` and `..`.
    /// The corresponding C functions are `openat` of `.` (a descriptor of its own), `fdopendir` and `readdir`.
    public static func list(_ dir: Descriptor) throws(SysError) -> [String] {
        let dupfd = try check("dup", dir.label) { pz_openat(dir.raw, ".", O_RDONLY | pz_flag_directory() | pz_flag_cloexec(), 0) }
        guard let d = fdopendir(dupfd) else {
            let e = SysError("opendir", dir.label)
            close(dupfd)
            throw e
        }
        return names(d)
    }

    /// Reads and closes an open directory stream.
    private static func names(_ d: OpaquePointer) -> [String] {
        defer { closedir(d) }
        var names: [String] = []
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Names in a directory by absolute path (for /proc); empty if it cannot be read.
    /// The corresponding C functions are `opendir` and `readdir`.
    public static func list(path: String) -> [String] {
        (try? listChecked(path: path).get()) ?? []
    }

    /// Names in a directory by absolute path, or why it could not be read.
    /// The corresponding C functions are `opendir` and `readdir`.
    public static func listChecked(path: String) -> Result<[String], SysError> {
        guard let d = opendir(path) else { return .failure(SysError("opendir", path)) }
        return .success(names(d))
    }

    /// Creates `path` and any missing parents with `mode` (like `mkdir -p`).
    /// The corresponding C function is `mkdir`, one call per component; EEXIST is not an error.
    public static func makeDirectories(_ path: String, mode: UInt32) throws(SysError) {
        var at = ""
        for part in path.split(separator: "/") {
            at += "/" + part
            if mkdir(at, mode_t(mode)) != 0, errno != EEXIST { throw SysError("mkdir", at) }
        }
    }

    /// The corresponding C function is `fchown`.
    public static func chown(_ fd: Descriptor, uid: UInt32, gid: UInt32) throws(SysError) {
        try check("chown", fd.label) { fchown(fd.raw, uid, gid) }
    }

    /// The corresponding C function is `fchmod`.
    public static func chmod(_ fd: Descriptor, mode: UInt32) throws(SysError) {
        try check("chmod", fd.label) { fchmod(fd.raw, mode_t(mode)) }
    }

    /// A device node's group and mode by path (opening /dev/kvm to fchmod it would create a VM):
    /// the group first, then the mode, as for `setOwner`.
    /// The corresponding C functions are `chown(path, -1, gid)`, then `chmod`.
    public static func setGroupAndMode(path: String, gid: UInt32, mode: UInt32) throws(SysError) {
        try check("chown", path) { Glibc.chown(path, uid_t.max, gid_t(gid)) }
        try check("chmod", path) { Glibc.chmod(path, mode_t(mode)) }
    }

    /// Owner, then mode (fchown clears set-id bits, so the mode comes last): how every pool
    /// file changes hands, to a guest's uid:gid or back to root.
    /// The corresponding C functions are `fchown`, then `fchmod`.
    public static func setOwner(_ fd: Descriptor, uid: UInt32, gid: UInt32, mode: UInt32) throws(SysError) {
        try chown(fd, uid: uid, gid: gid)
        try chmod(fd, mode: mode)
    }

    /// The corresponding C function is `ftruncate`. Shrinking a hugetlbfs file gives its tail pages back.
    public static func truncate(_ fd: Descriptor, to size: UInt64) throws(SysError) {
        try check("truncate", fd.label) { ftruncate(fd.raw, off_t(size)) }
    }

    /// Allocates `[offset, offset+length)`; on hugetlbfs the kernel zeroes the new pages
    /// in the calling thread, under its memory policy. The corresponding C function is `fallocate`.
    public static func allocate(_ fd: Descriptor, offset: UInt64, length: UInt64) throws(SysError) {
        try check("fallocate", fd.label) { pz_fallocate(fd.raw, 0, Int64(offset), Int64(length)) }
    }

    /// Gives the pages of `[offset, offset+length)` back to the kernel, keeping the size.
    /// The corresponding C function is `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`.
    public static func punchHole(_ fd: Descriptor, offset: UInt64, length: UInt64) throws(SysError) {
        try check("fallocate(punch)", fd.label) { pz_fallocate(fd.raw, 1, Int64(offset), Int64(length)) }
    }

    /// Takes a write lease on an open file. The kernel grants it only while no other open
    /// file description of the inode exists anywhere: another descriptor, a shared mapping,
    /// a descriptor in flight in a Unix socket, an io_uring registered file. Refused: EAGAIN.
    /// The corresponding C function is `fcntl(F_SETLEASE, F_WRLCK)`.
    public static func takeWriteLease(_ fd: Descriptor) throws(SysError) {
        try check("fcntl(F_SETLEASE, F_WRLCK)", fd.label) { pz_setlease(fd.raw, 1) }
    }

    /// Is the write lease still this descriptor's? An open by anyone else breaks it.
    /// The corresponding C function is `fcntl(F_GETLEASE)`.
    public static func holdsWriteLease(_ fd: Descriptor) -> Bool { pz_haswritelease(fd.raw) == 1 }

    /// Whether the kernel grants file leases at all (`/proc/sys/fs/leases-enable`).
    public static var leasesEnabled: Bool { !(readText("/proc/sys/fs/leases-enable") ?? "1").hasPrefix("0") }

    /// The corresponding C function is `fcntl(F_SETLEASE, F_UNLCK)`.
    public static func dropLease(_ fd: Descriptor) { _ = pz_setlease(fd.raw, 0) }

    /// Reads a whole small text file (sysfs, procfs); nil if it cannot be read.
    /// The corresponding C functions are `open` and `read`.
    public static func readText(_ path: String, limit: Int = 1 << 22) -> String? {
        readBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reads a whole file, up to `limit` bytes; nil if it cannot be read.
    /// The corresponding C functions are `open` and `read`.
    public static func readBytes(_ path: String, limit: Int = 1 << 22) -> [UInt8]? {
        let fd = pz_openat(AT_FDCWD, path, O_RDONLY | pz_flag_cloexec(), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Renames by absolute path, replacing the target (for the daemon's own state files).
    /// The corresponding C function is `rename`.
    public static func renamePath(_ from: String, _ to: String) throws(SysError) {
        try check("rename", "\(from) to \(to)") { Glibc.rename(from, to) }
    }

    /// Removes a directory and everything under it (a scratch directory of our own);
    /// symlinks are removed, never followed.
    /// The corresponding C functions are `lstat`, `rmdir` and `unlinkat`.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in list(path: path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlinkat(AT_FDCWD, path, 0)
        }
    }

    /// Removes a file by path (not a directory).
    /// The corresponding C function is `unlinkat(AT_FDCWD, path, 0)`.
    public static func removePath(_ path: String) throws(SysError) {
        try check("unlink", path) { unlinkat(AT_FDCWD, path, 0) }
    }

    /// Writes a small text file (sysfs knobs, state files); never through a symlink.
    /// The corresponding C functions are `open` with `O_NOFOLLOW` and `write`.
    public static func writeText(_ path: String, _ text: String, mode: UInt32 = 0o600) throws(SysError) {
        try writeBytes(path, Array(text.utf8), mode: mode)
    }

    /// Writes a whole file (created with `mode` if new); never through a symlink.
    /// The corresponding C functions are `open` with `O_TRUNC | O_CREAT | O_NOFOLLOW` and `write`.
    public static func writeBytes(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o600) throws(SysError) {
        let fd = try check("open", path) { pz_openat(AT_FDCWD, path, O_WRONLY | O_TRUNC | O_CREAT | pz_flag_nofollow() | pz_flag_cloexec(), mode_t(mode)) }
        defer { close(fd) }
        var at = 0
        while at < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + at, $0.count - at) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw SysError("write", path) }
            at += n
        }
    }

    /// statfs of an open file: (filesystem magic, block size). On hugetlbfs the block size is the page size.
    /// The corresponding C function is `fstatfs`.
    public static func filesystem(_ fd: Descriptor) throws(SysError) -> (magic: Int, blockSize: UInt64) {
        var magic: Int64 = 0
        var bsize: UInt64 = 0
        try check("statfs", fd.label) { pz_fstatfs(fd.raw, &magic, &bsize) }
        return (Int(magic), bsize)
    }

    public static let hugetlbfsMagic = 0x958458f6
}
