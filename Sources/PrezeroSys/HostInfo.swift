import Glibc

/// What a benchmark says about the machine it ran on.
public enum HostInfo {
    /// The running kernel's release (uname -r).
    /// The corresponding C function is `uname`.
    public static func kernelRelease() -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// How many CPUs are online, for a benchmark's default thread count and its host line.
    /// The corresponding C function is `sysconf(_SC_NPROCESSORS_ONLN)`.
    public static func onlineCPUs() -> Int { sysconf(Int32(_SC_NPROCESSORS_ONLN)) }
}

/// `/dev/kvm` and the user QEMU runs as, the inputs of `AccelDecision.decide`.
public enum KVMProbe {
    public static let devicePath = "/dev/kvm"

    /// The device node and whether it opens read-write for this (root) process: nil
    /// when there is no node, else its status and, when the open failed, why. The
    /// corresponding C functions are `stat` and `open(O_RDWR)`; the open tells a node
    /// that works from one whose module is not loaded or that a container forbids.
    public static func device(_ path: String = devicePath) -> (status: FileStatus, openError: String?, backend: String?)? {
        guard let s = Files.status(followingPath: path) else { return nil }
        let fd = open(path, O_RDWR | O_CLOEXEC)
        var failure: String?
        if fd < 0 { failure = String(cString: strerror(errno)) } else { close(fd) }
        let backend = ["kvm_intel", "kvm_amd", "kvm_pvm"].first { Files.status(followingPath: "/sys/module/\($0)") != nil }
        return (s, failure, backend)
    }

    /// A user's uid and every group it holds, as initgroups would set them. The
    /// corresponding C function is `getgrouplist`. Nil when there is no such user.
    public static func user(_ name: String) -> (uid: UInt32, groups: [UInt32])? {
        if name.hasPrefix("+") { return UInt32(name.dropFirst()).map { ($0, []) } }
        guard let pw = Users.user(name) else { return nil }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, pw.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, pw.pw_gid, &groups, &count)
        }
        return (pw.pw_uid, Array(groups.prefix(Int(max(count, 0)))))
    }

    /// This process's effective uid and groups, for a QEMU it starts itself.
    /// The corresponding C functions are `geteuid`, `getegid` and `getgroups`.
    public static func current() -> (uid: UInt32, groups: [UInt32]) {
        var n = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(n, 0)))
        n = getgroups(n, &groups)
        return (geteuid(), [getegid()] + groups.prefix(Int(max(n, 0))))
    }
}

/// The process environment.
public enum Environment {
    /// The corresponding C function is `getenv`.
    public static func value(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
