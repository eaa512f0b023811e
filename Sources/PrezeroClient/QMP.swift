import Glibc
import PrezeroSys

/// Just enough of QEMU's QMP to know that a VM is up: connect, leave capabilities
/// negotiation, ask `query-status`.
public enum QMP {
    /// QEMU's answer to query-status ("running", "prelaunch", …); throws if the socket
    /// is not there yet or QEMU does not answer within `timeout` seconds.
    public static func queryStatus(socket: String, timeout: Double = 5) throws(SysError) -> String {
        let c = try UnixConnection(connectingTo: socket)
        try c.setTimeout(seconds: timeout)
        _ = try reply(c)  // the greeting
        try c.writeAll(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
        _ = try reply(c)
        try c.writeAll(Array("{\"execute\":\"query-status\"}\n".utf8))
        let answer = try reply(c)
        guard let r = answer.range(of: "\"status\": \"") ?? answer.range(of: "\"status\":\"") else { return answer }
        return String(answer[r.upperBound...].prefix { $0 != "\"" })
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
