import Glibc
import PrezeroCShims

/// The calling thread's file-system identity. Linux keeps credentials per thread, so one
/// thread can act as another user while the rest of the process stays root.
public enum ThreadIdentity {
    /// Runs `body` on this thread with the file-system uid, gid and supplementary groups of
    /// another user: the kernel checks every lookup, link and unlink in it as that user's,
    /// since a non-zero fsuid drops the capabilities that bypass those checks (they come back
    /// with the fsuid). The corresponding C calls are `setgroups` (raw: glibc's would change
    /// every thread), `setfsgid` and `setfsuid`. Needs CAP_SETUID and CAP_SETGID.
    public static func asUser<T>(uid: UInt32, gid: UInt32, groups: [UInt32],
                                 _ body: () throws(SysError) -> T) throws(SysError) -> T {
        let own = try threadGroups()
        guard groups.withUnsafeBufferPointer({ pz_fs_identity_enter(uid, gid, $0.baseAddress, Int32($0.count)) }) == 0 else {
            throw SysError("setfsuid", "uid \(uid) gid \(gid)")
        }
        defer {
            // A thread left with a caller's identity would do root's work as that user: stop here.
            if own.withUnsafeBufferPointer({ pz_fs_identity_leave($0.baseAddress, Int32($0.count)) }) != 0 {
                fatalError("cannot take back this thread's own file-system identity after acting as uid \(uid): \(SysError("setfsuid", "0"))")
            }
        }
        return try body()
    }

    /// Runs `body` on a new thread that is wholly another user (real, effective and saved
    /// ids, and groups), and waits for it: what it connects to sees that user in SO_PEERCRED,
    /// and the rest of the process stays as it is. For tools and tests that act as a tenant.
    /// The corresponding C functions are `pthread_create` and `pthread_join`, and on the new thread
    /// raw `setgroups`, `setresgid` and `setresuid` system calls.
    public static func onThreadAs<T: Sendable>(uid: UInt32, gid: UInt32, groups: [UInt32] = [],
                                               _ body: @escaping @Sendable () -> T) throws(SysError) -> T {
        let out = ResultBox<T>()
        let run = ThreadRun(uid: uid, gid: gid, groups: groups) { out.value = body() }
        let arg = Unmanaged.passRetained(run).toOpaque()
        defer { Unmanaged<ThreadRun>.fromOpaque(arg).release() }
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let r = Unmanaged<ThreadRun>.fromOpaque(arg!).takeUnretainedValue()
            if r.groups.withUnsafeBufferPointer({ pz_thread_become(r.uid, r.gid, $0.baseAddress, Int32($0.count)) }) != 0 {
                r.failure = errno
            } else {
                r.body()
            }
            return nil
        }, arg)
        guard rc == 0 else { throw SysError("pthread_create", "", errno: rc) }
        pthread_join(tid, nil)
        guard let value = out.value else { throw SysError("setresuid", "uid \(uid) gid \(gid)", errno: run.failure) }
        return value
    }

    /// The calling thread's supplementary groups.
    static func threadGroups() throws(SysError) -> [UInt32] {
        let n = try check("getgroups", "") { pz_thread_groups(nil, 0) }
        var out = [UInt32](repeating: 0, count: Int(n))
        try check("getgroups", "") { out.withUnsafeMutableBufferPointer { pz_thread_groups($0.baseAddress, Int32($0.count)) } }
        return out
    }
}

/// A thread's run for `ThreadIdentity.onThreadAs`; read by the caller only after the join.
private final class ThreadRun: @unchecked Sendable {
    let uid: UInt32, gid: UInt32, groups: [UInt32]
    let body: () -> Void
    var failure: Int32 = 0
    init(uid: UInt32, gid: UInt32, groups: [UInt32], body: @escaping () -> Void) {
        (self.uid, self.gid, self.groups, self.body) = (uid, gid, groups, body)
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
