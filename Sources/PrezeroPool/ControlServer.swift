import Glibc
import Logging
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// The control socket: newline-delimited JSON, one request per connection,
/// peers checked with SO_PEERCRED before a byte is read.
public final class ControlServer: Sendable {
    let daemon: PoolDaemon
    let listener: UnixListener
    let logger: Logger
    let active = Atomic<Int>(0)
    static let maxConnections = 64

    public init(daemon: PoolDaemon, logger: Logger) throws {
        let c = daemon.config
        let dir = String(c.socket[..<(c.socket.lastIndex(of: "/") ?? c.socket.startIndex)])
        if !dir.isEmpty { try Files.makeDirectories(dir, mode: 0o755) }
        // Root-only unless other peers are configured; then SO_PEERCRED is the gate.
        let open = !c.allowedUids.isEmpty || !c.allowedGids.isEmpty
        listener = try UnixListener(path: c.socket, mode: open ? 0o666 : 0o600)
        self.daemon = daemon
        self.logger = logger
    }

    public func start() throws {
        try startThread { [self] in acceptLoop() }
        logger.info("listening on \(listener.path)")
    }

    public func stop() { listener.close() }

    func acceptLoop() {
        while true {
            let conn: UnixConnection
            do {
                conn = try listener.accept()
            } catch {
                if error.errno == EINVAL || error.errno == EBADF { return }  // closed for shutdown
                logger.error("accept: \(error)")
                sleepSeconds(0.1)
                continue
            }
            // A bounded number of connections at a time: a flood of slow peers must not
            // take every thread the hook and the CLI need.
            guard active.wrappingAdd(1, ordering: .relaxed).newValue <= ControlServer.maxConnections else {
                active.wrappingSubtract(1, ordering: .relaxed)
                _ = try? conn.setTimeout(seconds: 0.1)
                _ = try? conn.writeAll(Wire.encode(Response.error(ControlError(.busy, "prezerod is serving \(ControlServer.maxConnections) connections; try again"))))
                continue
            }
            do {
                try startThread { [self] in
                    defer { active.wrappingSubtract(1, ordering: .relaxed) }
                    serve(conn)
                }
            } catch {
                active.wrappingSubtract(1, ordering: .relaxed)
                logger.error("cannot start a connection thread: \(error)")
            }
        }
    }

    func allowed(_ p: PeerCredentials) -> Bool {
        let c = daemon.config
        return p.uid == 0 || c.allowedUids.contains(p.uid) || c.allowedGids.contains(p.gid)
    }

    func serve(_ conn: UnixConnection) {
        let response: Response
        do {
            try conn.setTimeout(seconds: Double(daemon.config.requestTimeoutMs) / 1000)
            let peer = try conn.peer()
            response = answer(conn, peer: peer)
            try conn.writeAll(Wire.encode(response))
            // Take in what the peer still sends (a refused or oversized request) before
            // closing, so that it reads our answer rather than a connection reset.
            conn.shutdownWrite()
            _ = try? conn.readAll(max: daemon.config.maxRequestBytes * 4)
        } catch {
            logger.warning("control connection: \(error)")
        }
    }

    private func answer(_ conn: UnixConnection, peer: PeerCredentials) -> Response {
        guard allowed(peer) else {
            logger.warning("refused peer pid \(peer.pid) uid \(peer.uid) gid \(peer.gid)")
            return Response.error(ControlError(.forbidden, "uid \(peer.uid) may not use prezerod; run as root or add the uid to allowed_uids in the prezerod config"))
        }
        let max = daemon.config.maxRequestBytes
        let line: [UInt8]
        do {
            switch try conn.readLine(max: max) {
            case .line(let l): line = l
            case .closed: return Response.error(ControlError(.badRequest, "request ended before its newline"))
            case .tooLong: return Response.error(ControlError(.tooLarge, "request is larger than max_request_bytes (\(max))"))
            }
        } catch {
            let why = error.errno == EAGAIN ? "no complete request within request_timeout_ms" : "\(error)"
            return Response.error(ControlError(.badRequest, why))
        }
        switch Wire.decodeRequest(line) {
        case .failure(let e):
            logger.warning("bad request from pid \(peer.pid): \(e.message)")
            return Response.error(e)
        case .success(let r):
            let res = daemon.handle(r)
            if case .error(let e) = res { logger.warning("\(r.operation.rawValue) from pid \(peer.pid) refused: \(e.message)") }
            return res
        }
    }
}
