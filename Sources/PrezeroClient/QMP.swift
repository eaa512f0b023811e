import Glibc
import PrezeroProtocol
import PrezeroSys

/// Just enough of QEMU's QMP to know that a VM is up and to drive a migration: connect,
/// leave capabilities negotiation, run one command. Replies are decoded, not searched.
public enum QMP {
    /// Why a QMP command gave no answer: the socket (not there yet, closed, timed out),
    /// a reply that is not QMP, or QEMU's own error reply.
    public enum Failure: Error, CustomStringConvertible {
        case socket(SysError)
        case unreadable(String)
        case refused(class: String, desc: String)

        public var description: String {
            switch self {
            case .socket(let e): "QMP: \(e)"
            case .unreadable(let line): "QMP: not a QMP reply: \(line.prefix(200))"
            case .refused(let c, let d): "QMP: \(c): \(d)"
            }
        }
    }

    /// The `status` of query-status ("running", "prelaunch", "inmigrate", …) and of
    /// query-migrate ("active", "completed", "failed", …).
    public struct Status: Decodable, Sendable {
        public var status: String
    }

    /// No fields: for commands whose return is `{}`.
    public struct Empty: Decodable, Sendable {}

    /// One reply line: an event, a return, or an error.
    struct Reply<T: Decodable>: Decodable {
        struct Error: Decodable {
            var `class`: String
            var desc: String
        }
        var event: String?
        var `return`: T?
        var error: Error?
        var QMP: Empty?
    }

    /// Runs one command (its JSON, e.g. `{"execute":"query-migrate"}`) and decodes its
    /// `return` as `T`. Throws if the socket is not there yet, QEMU does not answer within
    /// `timeout` seconds, or QEMU answers with an error.
    public static func execute<T: Decodable>(socket: String, _ command: String, as: T.Type,
                                             timeout: Double = 5) throws(Failure) -> T {
        let r: Reply<T>
        do throws(SysError) {
            let c = try UnixConnection(connectingTo: socket, deadline: monotonicSeconds() + timeout)
            try c.setTimeout(seconds: timeout)
            _ = try reply(c, Empty.self)  // the greeting
            try c.writeAll(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
            _ = try reply(c, Empty.self)
            try c.writeAll(Array((command + "\n").utf8))
            r = try reply(c, T.self)
        } catch {
            throw .socket(error)
        }
        if let e = r.error { throw .refused(class: e.class, desc: e.desc) }
        guard let value = r.return else { throw .unreadable(command) }
        return value
    }

    /// QEMU's answer to query-status.
    public static func queryStatus(socket: String, timeout: Double = 5) throws(Failure) -> String {
        try execute(socket: socket, "{\"execute\":\"query-status\"}", as: Status.self, timeout: timeout).status
    }

    /// The state of the outgoing migration.
    public static func migrationStatus(socket: String, timeout: Double = 5) throws(Failure) -> String {
        try execute(socket: socket, "{\"execute\":\"query-migrate\"}", as: Status.self, timeout: timeout).status
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

    /// The next reply that is not an event, decoded.
    static func reply<T: Decodable>(_ c: UnixConnection, _: T.Type) throws(SysError) -> Reply<T> {
        while true {
            guard case .line(let bytes) = try c.readLine(max: 1 << 20) else { throw SysError("read", "QMP", errno: ECONNRESET) }
            guard let r = try? Wire.decode(Reply<T>.self, bytes) else {
                throw SysError("read", "QMP: not a QMP reply: \(String(decoding: bytes.prefix(200), as: UTF8.self))", errno: EPROTO)
            }
            if r.event == nil { return r }
        }
    }
}
