import Glibc

/// What a benchmark says about the machine it ran on.
public enum HostInfo {
    /// The running kernel's release (uname -r).
    public static func kernelRelease() -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static func onlineCPUs() -> Int { sysconf(Int32(_SC_NPROCESSORS_ONLN)) }
}
