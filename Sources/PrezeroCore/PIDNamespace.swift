/// prezerod must run in the host's initial PID namespace: from any other it cannot see
/// the host's processes, so it could not name a file's holders in its logs and status.
public enum PIDNamespace {
    /// `/proc/self/ns/pid` in the initial PID namespace: its inode is fixed by the kernel
    /// (PROC_PID_INIT_INO, include/linux/proc_ns.h), whichever /proc is mounted.
    public static let initialLink = "pid:[4026531836]"

    /// Why prezerod must not run here, or nil. `own` is `/proc/self/ns/pid`; `pid1` is
    /// `/proc/1/ns/pid`, nil when it cannot be read (PID 1 may refuse that even to root):
    /// then the fixed inode decides alone.
    public static func problem(own: String, pid1: String?) -> String? {
        let fix = "run prezerod on the host itself, not inside a container's or unshare's PID namespace"
        guard own == initialLink else {
            return "prezerod is not in the host's initial PID namespace (/proc/self/ns/pid is \(own), not \(initialLink)), so it cannot see the host's processes; \(fix)"
        }
        if let pid1, pid1 != own {
            return "prezerod's PID namespace (\(own)) is not PID 1's (\(pid1)): this /proc is another namespace's, so it cannot see the host's processes; \(fix)"
        }
        return nil
    }
}
