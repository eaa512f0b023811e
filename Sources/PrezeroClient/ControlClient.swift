import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

/// Talks to prezerod over its control socket.
public struct ControlClient: Sendable {
    public var socket: String
    public var timeout: Double

    /// A client of the daemon at `socket`; `timeout` (seconds) bounds each request, retries included.
    public init(socket: String = ControlProtocol.defaultSocket, timeout: Double = 30) {
        self.socket = socket
        self.timeout = timeout
    }

    @discardableResult
    /// Sends one request and returns the daemon's answer; a refusal by the daemon
    /// comes back as a thrown ControlError.
    /// `too_many_connections` (nothing was done) is asked again until `timeout`.
    public func send(_ request: Request) throws(ControlError) -> Response {
        let line = Wire.encode(request)
        let end = monotonicSeconds() + timeout
        for attempt in 0... {
            let res = try exchange(line, deadline: end)
            guard case .error(let e) = res else { return res }
            let pause = ControlProtocol.retryPause(attempt)
            guard e.code == .tooManyConnections, monotonicSeconds() + pause < end else { throw e }
            sleepSeconds(pause)
        }
        fatalError("unreachable")
    }

    /// Sends `request` and takes the answer `pick` expects; any other answer is an error.
    func ask<T>(_ request: Request, _ pick: (Response) -> T?) throws(ControlError) -> T {
        let res = try send(request)
        guard let v = pick(res) else {
            throw ControlError(.system, "prezerod answered \(request.operation.rawValue) with \(res.kind); is it a different version?")
        }
        return v
    }

    /// The pool's status; a caller other than root sees only its own leases' outside names.
    public func status() throws(ControlError) -> StatusResult {
        try ask(.status) { if case .status(let s) = $0 { s } else { nil } }
    }

    /// Claims a clean file (see `ClaimRequest`); a miss is an answer, not an error.
    @discardableResult
    public func claim(_ c: ClaimRequest) throws(ControlError) -> ClaimResult {
        try ask(.claim(c)) { if case .claim(let r) = $0 { r } else { nil } }
    }

    /// Ends a lease; the file is taken back once the kernel says no one else has it open.
    @discardableResult
    public func release(_ r: ReleaseRequest) throws(ControlError) -> ReleaseResult {
        try ask(.release(r)) { if case .release(let r) = $0 { r } else { nil } }
    }

    /// Sets the targets in `scope` and answers at once with the status; it does not wait for the fills.
    @discardableResult
    public func fill(_ scope: PoolScope = PoolScope()) throws(ControlError) -> StatusResult {
        try ask(.fill(scope)) { if case .status(let s) = $0 { s } else { nil } }
    }

    /// Sets the targets in `scope` to 0 and gives their clean files back; answers with the status.
    @discardableResult
    public func drain(_ scope: PoolScope = PoolScope()) throws(ControlError) -> StatusResult {
        try ask(.drain(scope)) { if case .status(let s) = $0 { s } else { nil } }
    }

    /// Asks prezerod to free pages for a backend that allocates its own (root only).
    @discardableResult
    public func makeRoom(_ m: MakeRoomRequest) throws(ControlError) -> MakeRoomResult {
        try ask(.makeRoom(m)) { if case .makeRoom(let r) = $0 { r } else { nil } }
    }

    /// Sends raw bytes (already a line) and decodes whatever comes back, within `timeout`.
    public func exchange(_ bytes: [UInt8]) throws(ControlError) -> Response {
        try exchange(bytes, deadline: monotonicSeconds() + timeout)
    }

    /// The same by `deadline` (monotonic seconds), the connect included: it blocks while
    /// prezerod's listen queue is full (prezerod stopped or hung).
    public func exchange(_ bytes: [UInt8], deadline: Double) throws(ControlError) -> Response {
        let reply: [UInt8]
        do {
            reply = try UnixConnection.exchange(path: socket, bytes, maxAnswer: 16 << 20, deadline: deadline)
        } catch {
            throw ControlClient.describe(error, socket: socket, timeout: timeout)
        }
        guard !reply.isEmpty else { throw ControlError(.system, "prezerod closed the connection without an answer") }
        do {
            return try Wire.decode(Response.self, reply)
        } catch {
            throw ControlError(.system, "unreadable answer from prezerod: \(Wire.describe(error))")
        }
    }

    static func describe(_ e: SysError, socket: String, timeout: Double) -> ControlError {
        let within = timeout == timeout.rounded() && timeout < 1e15 ? "\(Int(timeout)) s" : "\(timeout) s"
        guard e.call == "connect" else {
            return ControlError(.system, e.errno == ETIMEDOUT ? "prezerod did not answer within \(within); see its log, or raise --timeout" : "\(e)")
        }
        switch e.errno {
        case ETIMEDOUT:
            return ControlError(.unreachable, "prezerod did not accept the connection within \(within): its listen queue at \(socket) is full (is it stopped or hung?); see its log, or raise --timeout")
        case ENOENT:
            return ControlError(.unreachable, "prezerod is not running: no socket at \(socket); start it with: prezerod (or pass --socket)")
        case EACCES, EPERM:
            return ControlError(.unreachable, "permission denied on \(socket): the control socket is root's (and socket_group's, if set); run as root, or join socket_group with your uid in allowed_uids")
        case ECONNREFUSED:
            return ControlError(.unreachable, "prezerod is not listening on \(socket) (stale socket); restart prezerod")
        default:
            return ControlError(.unreachable, "cannot reach prezerod at \(socket): \(e)")
        }
    }
}
