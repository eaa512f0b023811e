import PrezeroCore
import PrezeroProtocol

/// The hugetlbfs mounts prezerod pools when `mounts:` is not set: only those libvirt is
/// configured to use, read from qemu.conf: each `hugetlbfs_mount`, and the mount that holds
/// `memory_backing_dir`. Never every hugetlbfs mount on the host, which may include ones
/// another program made for itself (kubelet's, a database's). libvirt itself falls back to
/// every mount when `hugetlbfs_mount` is unset; prezerod does not follow it there.
public enum DefaultPoolMounts {
    /// A mount chosen, with the qemu.conf setting that names it.
    public struct Choice: Equatable, Sendable, CustomStringConvertible {
        public var path: String
        /// The qemu.conf setting that names it.
        public var why: String
        public var description: String { "\(path) (\(why))" }
    }

    /// A path with its slashes made single and no trailing one, as libvirt compares mount paths.
    public static func normalize(_ path: String) -> String {
        "/" + path.split(separator: "/").joined(separator: "/")
    }

    /// - Parameter hostMounts: the paths of the hugetlbfs mounts on the host.
    /// - Returns: the mounts, in qemu.conf's order without repeats, and what was passed over and why.
    public static func choose(conf: QemuConf, hostMounts: [String]) -> (mounts: [Choice], skipped: [String]) {
        let host = hostMounts.map(normalize)
        var mounts: [Choice] = []
        var skipped: [String] = []
        func add(_ path: String, _ why: String) {
            if !mounts.contains(where: { $0.path == path }) { mounts.append(Choice(path: path, why: why)) }
        }
        if let named = conf.hugetlbfsMounts {
            for p in named {
                if host.contains(normalize(p)) { add(normalize(p), "hugetlbfs_mount") }
                else { skipped.append("hugetlbfs_mount \(p) is not a hugetlbfs mount") }
            }
        } else {
            skipped.append("hugetlbfs_mount is not set (libvirt would then take every hugetlbfs mount; prezerod does not)")
        }
        if let dir = conf.memoryBackingDir {
            let d = normalize(dir)
            let holder = host.filter { d == $0 || d.hasPrefix($0 == "/" ? "/" : $0 + "/") }.max { $0.count < $1.count }
            if let m = holder { add(m, "memory_backing_dir \(dir)") }
            else { skipped.append("memory_backing_dir \(dir) is not on hugetlbfs") }
        }
        return (mounts, skipped)
    }
}
