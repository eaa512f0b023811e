import Foundation
import PrezeroSys

/// A step of the private environment that could not be made or undone: one line that says
/// what and, where there is one, the fix.
public struct LabError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Commands and daemons as the environment runs them: to completion with their output in
/// files (a daemon a command leaves behind cannot hold a pipe open), or stopped by PID.
public enum LabCommand {
    /// Runs `args` to completion; its exit status, stdout and stderr. After `timeout` seconds it
    /// is killed (and its status is that of the kill).
    @discardableResult
    public static func run(_ args: [String], stdin: String? = nil, env: [String: String] = [:],
                           timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
        let tmp = "/tmp/prezero-run-\(Processes.current())-\(UInt32.random(in: 0...UInt32.max))"
        defer { for f in [".in", ".out", ".err"] { try? Files.removePath(tmp + f) } }
        try Files.writeText(tmp + ".in", stdin ?? "")
        let child = try ChildProcess(args, stdin: tmp + ".in", stdout: tmp + ".out", stderr: tmp + ".err", env: env)
        let status = try child.wait(timeout: timeout)
        return (status, Files.readText(tmp + ".out") ?? "", Files.readText(tmp + ".err") ?? "")
    }

    /// Runs `args` and throws, with its stderr, unless it exits 0.
    public static func check(_ args: [String], timeout: Double = 120) throws {
        let r = try run(args, timeout: timeout)
        guard r.status == 0 else {
            throw LabError("\(args.joined(separator: " ")) exited with status \(r.status): \(r.err.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Polls `cond` every 50 ms until it holds, or throws once `timeout` seconds have passed.
    public static func waitFor(_ what: String, timeout: Double = 30, _ cond: () throws -> Bool) throws {
        let end = monotonicSeconds() + timeout
        while monotonicSeconds() < end {
            if try cond() { return }
            sleepSeconds(0.05)
        }
        throw LabError("timed out after \(timeout) s waiting for \(what)")
    }
}

/// Daemons known by PID: the ones libvirt's tools fork away (`-d`) and write a pid file for,
/// and the ones a killed run left behind.
public enum Daemons {
    /// Running, and not a zombie (without systemd nobody may reap an orphan).
    public static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, let stat = Files.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")"),
              stat.index(close, offsetBy: 2) < stat.endIndex else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// The live PID a pid file names, if any.
    public static func pid(file: String) -> Int32? {
        guard let text = Files.readText(file), let p = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), alive(p) else { return nil }
        return p
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace` seconds.
    public static func stop(_ pid: Int32, grace: Double = 10) {
        Processes.signal(pid, SIGTERM)
        if (try? LabCommand.waitFor("\(pid) to exit", timeout: grace) { !alive(pid) }) == nil {
            Processes.signal(pid, SIGKILL)
            try? LabCommand.waitFor("\(pid) to die", timeout: 5) { !alive(pid) }
        }
    }

    /// Starts a self-daemonizing program (`-d`), waits for its foreground process, and returns
    /// the PID its pid file then names.
    @discardableResult
    public static func spawn(_ args: [String], pidFile: String) throws -> Int32 {
        try LabCommand.check(args, timeout: 60)
        var pid: Int32?
        try LabCommand.waitFor("\(args[0]) to write \(pidFile)") {
            pid = Daemons.pid(file: pidFile)
            return pid != nil
        }
        return pid!
    }
}

/// A host setting a lab changed, saved as it was found, with the PID of the lab that owns it:
/// a lab nested in another (a bench inside `make test`'s) leaves the outer one's to it, and one
/// whose owner died is taken over with the values it saved, the host's own.
struct SavedSetting {
    let path: String

    /// The values saved, and whether a live process other than this one owns them.
    func read() -> (values: [String], ownedElsewhere: Bool)? {
        guard let text = Files.readText(path) else { return nil }
        var fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var owner: Int32?
        if let last = fields.last, last.hasPrefix("pid=") {
            owner = Int32(last.dropFirst(4))
            fields.removeLast()
        }
        let elsewhere = owner.map { $0 != Processes.current() && Daemons.alive($0) } ?? false
        return (fields, elsewhere)
    }

    /// Saves `found` as this process's unless a live lab owns the setting already; true when
    /// this process owns it now (and so restores it). A dead owner's values are kept.
    func claim(found: [String]) throws -> Bool {
        if let saved = read() {
            if saved.ownedElsewhere { return false }
            try Files.writeText(path, (saved.values + ["pid=\(Processes.current())"]).joined(separator: " ") + "\n", mode: 0o644)
            return true
        }
        try Files.writeText(path, (found + ["pid=\(Processes.current())"]).joined(separator: " ") + "\n", mode: 0o644)
        return true
    }
}
