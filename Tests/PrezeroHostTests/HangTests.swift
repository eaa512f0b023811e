import Foundation
import Glibc
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    /// Never hang: whatever state prezerod is in, the hook and the CLI give up within their
    /// timeouts, and libvirt starts the domain (fail-open) or refuses it (`fail_closed`).
    @Suite("a stopped or hung prezerod: callers give up within their timeouts", .tags(.hugePages))
    struct Hang: HostSuite {
        @Test("with prezerod stopped and its listen queue full, the hook and prezero status give up within their timeouts")
        func stoppedDaemonWithFullQueue() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 0")
            defer { pool.close() }
            try pool.start()
            let daemon = try #require(pool.process)
            daemon.signal(SIGSTOP)
            defer { daemon.signal(SIGCONT) }
            try waitFor("prezerod to stop", timeout: 5) { processState(daemon.pid) == "T" }
            let timeoutMs = 500, margin = 0.5

            // Stopped, queue not yet full: the connect succeeds and the answer never comes.
            let unanswered = try runHookStart(pool, timeoutMs: timeoutMs, failClosed: false)
            print("prezero-hook, prezerod stopped, queue not full: exit \(unanswered.status) after \(unanswered.seconds) s: \(unanswered.err)")
            #expect(unanswered.status == 0 && unanswered.seconds < Double(timeoutMs) / 1000 + margin, "\(unanswered)")

            // Fill the listen queue (backlog 64) with idle connections: prezerod was stopped
            // first, so none is accepted, and the next connect would block.
            var idle: [UnixConnection] = []
            defer { idle.removeAll() }
            while idle.count < 1000 {
                do throws(SysError) {
                    idle.append(try UnixConnection(connectingTo: pool.socket, deadline: monotonicSeconds() + 0.2))
                } catch {
                    #expect(error.errno == ETIMEDOUT, "\(error)")
                    break
                }
            }
            print("listen queue full after \(idle.count) idle connections")
            #expect(idle.count >= 64 && idle.count < 1000)

            for failClosed in [false, true] {
                let r = try runHookStart(pool, timeoutMs: timeoutMs, failClosed: failClosed)
                print("prezero-hook, fail_closed = \(failClosed), prezerod stopped, queue full: exit \(r.status) after \(String(format: "%.3f", r.seconds)) s: \(r.err)")
                #expect(r.seconds < Double(timeoutMs) / 1000 + margin, "the hook took \(r.seconds) s with timeout_ms = \(timeoutMs)")
                #expect(r.status == (failClosed ? 1 : 0), "fail_closed = \(failClosed): exit \(r.status): \(r.err)")
                #expect(r.err.split(separator: "\n").count == 1 && r.err.contains("\(timeoutMs) ms"), "\(r.err)")
            }

            let s = timed([Binaries.prezero, "status", "--socket", pool.socket, "--timeout", "0.5"])
            let took = s.seconds
            print("prezero status --timeout 0.5, prezerod stopped, queue full: exit \(s.status) after \(String(format: "%.3f", took)) s: \(s.err)")
            #expect(took < 0.5 + 1, "prezero status took \(took) s with --timeout 0.5")
            #expect(s.status == ControlError.Code.unreachable.exitStatus, "exit \(s.status): \(s.err)")
            #expect(s.err.split(separator: "\n").count == 1 && s.err.contains("0.5 s"), "\(s.err)")
        }
    }
}

extension HostSuite {
    /// Runs prezero-hook as libvirtd does at `start begin`, with a hook.conf naming `socket`;
    /// returns its status, stderr and how long it took.
    func runHookStart(_ pool: TestPool, timeoutMs: Int, failClosed: Bool) throws -> (status: Int32, err: String, seconds: Double) {
        let conf = pool.base + "/hook.conf"
        try "socket = \(pool.socket)\ntimeout_ms = \(timeoutMs)\nfail_closed = \(failClosed)\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let xml = try String(contentsOfFile: fixturesDir + "/libvirt-9.0-hook-stdin/h1.start-begin.xml", encoding: .utf8)
        return timed([Binaries.dir + "/prezero-hook", "h1", "start", "begin", "-"], stdin: xml, env: ["PREZERO_HOOK_CONF": conf])
    }

    /// Runs a command and times it; one still running after 5 s is killed and reads as status -1.
    func timed(_ args: [String], stdin: String? = nil, env: [String: String] = [:]) -> (status: Int32, err: String, seconds: Double) {
        let began = monotonicSeconds()
        do {
            let r = try run(args, stdin: stdin, env: env, timeout: 5)
            return (r.status, r.err, monotonicSeconds() - began)
        } catch {
            return (-1, "\(error)", monotonicSeconds() - began)
        }
    }

    /// The process state letter in /proc/PID/stat (`T` once stopped).
    func processState(_ pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
    }
}
