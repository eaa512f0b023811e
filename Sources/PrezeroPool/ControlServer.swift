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
    /// When all places are taken, the connection that has waited longest for its
    /// request gives its place to the new one, once it has waited this long: the hook
    /// and the CLI send theirs as soon as they connect, so it is an idle or slow peer
    /// (which may come back at once: then it is the newest, and the next to go is the
    /// oldest of the others).
    static let evictableAfter = 0.1
    /// The connections still reading their request, by number: when they came, and the
    /// connection, which only an entry here may cut off (its owner removes the entry
    /// before it closes the descriptor). One cut off is answered `too_many_connections`.
    let reading = Mutex<[UInt64: (since: Double, conn: UnixConnection)]>([:])
    let accepted = Atomic<UInt64>(0)

    public init(daemon: PoolDaemon, logger: Logger) throws {
        let c = daemon.config
        let dir = String(c.socket[..<(c.socket.lastIndex(of: "/") ?? c.socket.startIndex)])
        if !dir.isEmpty { try Files.makeDirectories(dir, mode: 0o755) }
        // Root-only, or 0660 with socket_group: only that group's members reach it, and
        // SO_PEERCRED then admits root and allowed_uids/allowed_gids. Never open to all.
        var group: UInt32?
        if let name = c.socketGroup {
            guard let gid = Users.gid(name) else {
                throw HostError(description: "socket_group: no group '\(name)' on this host; create it (groupadd \(name)) or name another in the prezerod config")
            }
            group = gid
        }
        listener = try UnixListener(path: c.socket, mode: group == nil ? 0o600 : 0o660, group: group)
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
            // take every thread the hook and the CLI need. When all are taken, the
            // oldest peer that has still not sent its request is cut off for the new
            // one (its thread ends at once); the bound on threads is then twice the limit.
            let n = active.wrappingAdd(1, ordering: .relaxed).newValue
            guard n <= ControlServer.maxConnections || (n <= 2 * ControlServer.maxConnections && evictOldestIdle()) else {
                active.wrappingSubtract(1, ordering: .relaxed)
                _ = try? conn.setTimeout(seconds: 0.1)
                _ = try? conn.writeAll(Wire.encode(Response.error(ControlError(.tooManyConnections, "prezerod is serving \(ControlServer.maxConnections) connections, none of them idle; try again"))))
                // Take in the request already sent (10 ms at most), so that the peer reads
                // this answer rather than a connection reset.
                conn.shutdownWrite()
                _ = try? conn.setTimeout(seconds: 0.01)
                _ = try? conn.readAll(max: daemon.config.maxRequestBytes)
                continue
            }
            let id = accepted.wrappingAdd(1, ordering: .relaxed).newValue
            reading.withLock { $0[id] = (monotonicSeconds(), conn) }
            do {
                try startThread { [self] in
                    defer { active.wrappingSubtract(1, ordering: .relaxed) }
                    serve(conn, id: id)
                }
            } catch {
                reading.withLock { _ = $0.removeValue(forKey: id) }
                active.wrappingSubtract(1, ordering: .relaxed)
                logger.error("cannot start a connection thread: \(error)")
            }
        }
    }

    /// Cuts off the connection that has waited longest for its request, if it has for
    /// `evictableAfter`; false when every connection is young or busy with an answer.
    func evictOldestIdle() -> Bool {
        let now = monotonicSeconds()
        return reading.withLock { r in
            guard let (id, oldest) = r.filter({ now - $0.value.since >= ControlServer.evictableAfter })
                .min(by: { $0.value.since < $1.value.since }) else { return false }
            r.removeValue(forKey: id)
            oldest.conn.stopReading()
            logger.warning("all \(ControlServer.maxConnections) connections taken: cut off one idle for \(Int((now - oldest.since) * 1000)) ms without a request")
            return true
        }
    }

    func allowed(_ c: Caller) -> Bool {
        CallerPolicy.admitted(c, allowedUids: daemon.config.allowedUids, allowedGids: daemon.config.allowedGids)
    }

    func serve(_ conn: UnixConnection, id: UInt64) {
        let response: Response
        let timeout = Double(daemon.config.requestTimeoutMs) / 1000
        do {
            defer { reading.withLock { _ = $0.removeValue(forKey: id) } }
            try conn.setTimeout(seconds: timeout)
            let p = try conn.peer()
            let peer = Caller(pid: p.pid, uid: p.uid, gid: p.gid, groups: p.uid == 0 ? [] : try conn.peerGroups())
            response = answer(conn, peer: peer, id: id, deadline: monotonicSeconds() + timeout)
            try conn.setTimeout(seconds: timeout)
            try conn.writeAll(Wire.encode(response))
            // Take in what the peer still sends (a refused or oversized request) before
            // closing, so that it reads our answer rather than a connection reset.
            conn.shutdownWrite()
            _ = try? conn.readAll(max: daemon.config.maxRequestBytes * 4)
        } catch {
            logger.warning("control connection: \(error)")
        }
    }

    private func answer(_ conn: UnixConnection, peer: Caller, id: UInt64, deadline: Double) -> Response {
        guard allowed(peer) else {
            logger.warning("refused peer pid \(peer.pid) uid \(peer.uid) gid \(peer.gid)")
            return Response.error(ControlError(.forbidden, "uid \(peer.uid) may not use prezerod; run as root or add the uid to allowed_uids (or a group of it to allowed_gids) in the prezerod config"))
        }
        let max = daemon.config.maxRequestBytes
        let line: [UInt8]
        do {
            let read = try conn.readLine(max: max, deadline: deadline)
            // A whole request is in: from here on the connection is never cut off.
            guard reading.withLock({ $0.removeValue(forKey: id) }) != nil else {
                return Response.error(ControlError(.tooManyConnections, "cut off: no whole request within \(ControlServer.evictableAfter) s while prezerod had \(ControlServer.maxConnections) connections"))
            }
            switch read {
            case .line(let l): line = l
            case .closed: return Response.error(ControlError(.badRequest, "request ended before its newline"))
            case .tooLong: return Response.error(ControlError(.tooLarge, "request is larger than max_request_bytes (\(max))"))
            case .timedOut: return Response.error(ControlError(.badRequest, "no complete request within request_timeout_ms"))
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
            let res = daemon.handle(r, from: peer)
            if case .error(let e) = res { logger.warning("\(r.operation.rawValue) from pid \(peer.pid) uid \(peer.uid) refused: \(e.message)") }
            return res
        }
    }
}
