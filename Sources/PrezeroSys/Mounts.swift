import Glibc
import PrezeroCShims

/// Mounting hugetlbfs, for the benchmark and the demo's private pools.
public enum Mounts {
    /// The corresponding C function is `mount("none", path, "hugetlbfs", 0, "pagesize=…")`.
    public static func mountHugetlbfs(at path: String, pageSize: UInt64, options: String = "") throws(SysError) {
        let opts = "pagesize=\(pageSize)" + (options.isEmpty ? "" : "," + options)
        try check("mount hugetlbfs", path) { mount("none", path, "hugetlbfs", 0, opts) }
    }

    /// The corresponding C function is `umount2(MNT_DETACH)`: files still open keep their pages until closed.
    public static func unmount(_ path: String) throws(SysError) {
        try check("umount", path) { umount2(path, Int32(MNT_DETACH)) }
    }
}
