import Glibc
import PrezeroCShims

/// A child process started with posix_spawn and reaped with waitpid: the one place
/// prezero starts programs. (Foundation's Process closes every descriptor up to the
/// limit before exec, which costs tens of ms a start, and was seen to hang in
/// waitUntilExit on a child that had exited.)
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public private(set) var status: Int32?

    /// Starts `args` (the program is looked up on PATH). Each of stdin, stdout and
    /// stderr is opened from the path given, or inherited when nil. `env` is added to
    /// (and overrides) this process's environment.
    /// The corresponding C function is `posix_spawnp`.
    public init(_ args: [String], stdin: String? = "/dev/null", stdout: String? = "/dev/null", stderr: String? = "/dev/null",
                env: [String: String] = [:]) throws(SysError) {
        precondition(!args.isEmpty, "a program to run")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin { posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0) }
        if let stdout { posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        if let stderr { posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        // A clean signal state: the mask and ignored signals survive exec, and a parent
        // that blocks SIGTERM (a test runner, a service manager) must not pass that on.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var reset = sigset_t()
        sigemptyset(&reset)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&reset, sig) }
        posix_spawnattr_setsigdefault(&attr, &reset)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var environment: [String] = []
        var i = 0
        while let e = environ[i] {
            let entry = String(cString: e)
            let key = String(entry.prefix { $0 != "=" })
            if env[key] == nil { environment.append(entry) }
            i += 1
        }
        environment += env.map { "\($0.key)=\($0.value)" }
        let argv = args.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { for a in argv + envp { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, args[0], &actions, &attr, argv, envp)
        guard rc == 0 else { throw SysError("posix_spawn", args[0], errno: rc) }
        self.pid = pid
    }

    /// Reaps the child if it has exited; true while it runs.
    public var isRunning: Bool {
        guard status == nil else { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid { status = st; return false }
        return r == 0
    }

    /// The exit status: the code, or 128 + the signal that ended it.
    public var exitCode: Int32? {
        status.map { $0 & 0x7f == 0 ? ($0 >> 8) & 0xff : 128 + ($0 & 0x7f) }
    }

    /// Waits for the exit, killing the child after `timeout` seconds (and throwing ETIMEDOUT).
    /// The corresponding C functions are `waitpid` and, on a timeout, `kill(SIGKILL)`.
    @discardableResult
    public func wait(timeout: Double = .infinity) throws(SysError) -> Int32 {
        if timeout == .infinity, status == nil {
            // Blocking: the exit is seen the moment it happens (timed callers rely on it).
            var st: Int32 = 0
            while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
            status = st
        }
        let end = monotonicSeconds() + timeout
        var pause = 0.0005
        while isRunning {
            if monotonicSeconds() > end {
                kill(pid, SIGKILL)
                while isRunning { sleepSeconds(0.01) }
                throw SysError("wait", "process \(pid) (still running after \(timeout) s, killed)", errno: ETIMEDOUT)
            }
            sleepSeconds(pause)
            pause = min(pause * 2, 0.005)
        }
        return exitCode ?? 0
    }

    /// Sends `sig` to the child, unless it has already been reaped (its pid may be another's by then).
    /// The corresponding C function is `kill`.
    public func signal(_ sig: Int32) { if status == nil { kill(pid, sig) } }
}

/// This process: its pid, uid and executable, and reaping the processes it may wait for.
public enum Processes {
    /// This process's pid. The corresponding C function is `getpid`.
    public static func current() -> Int32 { getpid() }

    /// The directory of this process's executable (/proc/self/exe), where the binaries
    /// installed or built beside it are.
    /// The corresponding C function is `readlink`.
    public static func executableDirectory() -> String {
        let own = (try? Files.readLink("/proc/self/exe").get()) ?? CommandLine.arguments[0]
        return String(own[..<(own.lastIndex(of: "/") ?? own.startIndex)])
    }
}

extension Processes {
    /// The real user ID of this process.
    /// The corresponding C function is `getuid`.
    public static func userID() -> UInt32 { getuid() }
}

extension Processes {
    /// Makes this process the reaper of its descendants' orphans (`PR_SET_CHILD_SUBREAPER`), or
    /// stops it: a VMM whose launcher was killed becomes this process's to wait for, not init's,
    /// which on a host without systemd may never reap it.
    /// The corresponding C function is `prctl(PR_SET_CHILD_SUBREAPER)`.
    public static func adoptOrphans(_ on: Bool) { _ = pz_set_child_subreaper(on ? 1 : 0) }

    /// Waits up to `timeout` seconds for a process this one may reap (a child, or an orphan
    /// adopted with `adoptOrphans`) to exit, and reaps it. False if it is still running.
    /// The corresponding C function is `waitpid(WNOHANG)`, polled every 2 ms.
    public static func reap(_ pid: Int32, timeout: Double) -> Bool {
        let end = monotonicSeconds() + timeout
        var st: Int32 = 0
        while true {
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid || (r == -1 && errno == ECHILD) { return true }
            if monotonicSeconds() > end { return false }
            sleepSeconds(0.002)
        }
    }
}

/// Namespaces the process runs in.
public enum Namespaces {
    /// The PID namespace link of a process (`/proc/self/ns/pid` reads `pid:[4026531836]` in
    /// the initial one), or why it could not be read.
    /// The corresponding C function is `readlink`.
    public static func pidLink(_ pid: String) -> Result<String, SysError> {
        Files.readLink("/proc/\(pid)/ns/pid")
    }
}

extension Processes {
    /// Sends `sig` to any process by PID (a daemon this process started that forked itself
    /// away, a stale one a killed run left). False if there is no such process or it is not ours.
    /// The corresponding C function is `kill`.
    @discardableResult
    public static func signal(_ pid: Int32, _ sig: Int32) -> Bool { pid > 0 && kill(pid, sig) == 0 }
}
