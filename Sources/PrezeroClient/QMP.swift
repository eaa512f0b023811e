import Glibc
import PrezeroSys

/// Just enough of QEMU's QMP to know that a VM is up and to drive a migration: connect,
/// leave capabilities negotiation, run one command.
public enum QMP {
    /// One command's reply line: `command` is the command's JSON, e.g.
    /// `{"execute":"query-migrate"}`. Throws if the socket is not there yet or QEMU does not
    /// answer within `timeout` seconds.
    public static func execute(socket: String, _ command: String, timeout: Double = 5) throws(SysError) -> String {
        let c = try UnixConnection(connectingTo: socket)
        try c.setTimeout(seconds: timeout)
        _ = try reply(c)  // the greeting
        try c.writeAll(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
        _ = try reply(c)
        try c.writeAll(Array((command + "\n").utf8))
        return try reply(c)
    }

    /// The string value of `key` in a reply line (`"status": "completed"`), nil if absent.
    public static func field(_ key: String, in reply: String) -> String? {
        guard let r = reply.range(of: "\"\(key)\": \"") ?? reply.range(of: "\"\(key)\":\"") else { return nil }
        return String(reply[r.upperBound...].prefix { $0 != "\"" })
    }

    /// QEMU's answer to query-status ("running", "prelaunch", "inmigrate", …).
    public static func queryStatus(socket: String, timeout: Double = 5) throws(SysError) -> String {
        let answer = try execute(socket: socket, "{\"execute\":\"query-status\"}", timeout: timeout)
        return field("status", in: answer) ?? answer
    }

    /// Polls until QMP answers query-status; false after `timeout` seconds or once `alive` says the VMM is gone.
    public static func waitReady(socket: String, timeout: Double, alive: () -> Bool) -> Bool {
        let end = monotonicSeconds() + timeout
        while monotonicSeconds() < end && alive() {
            if (try? queryStatus(socket: socket)) != nil { return true }
            sleepSeconds(0.002)
        }
        return false
    }

    /// The next line that is not an event.
    static func reply(_ c: UnixConnection) throws(SysError) -> String {
        while true {
            guard case .line(let bytes) = try c.readLine(max: 1 << 20) else { throw SysError("read", "QMP", errno: ECONNRESET) }
            let line = String(decoding: bytes, as: UTF8.self)
            if !line.contains("\"event\"") { return line }
        }
    }
}
