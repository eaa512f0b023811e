import Dispatch
import Glibc
import Logging
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// The loop's own state, touched by its thread alone.
final class EventLoop {
    static let listenerToken: UInt64 = 0
    static let wakeupToken: UInt64 = 1

    enum Phase {
        /// Waiting for the whole request; cut off at its deadline or to make room.
        case reading
        /// With a handler; never cut off, and out of the epoll set meanwhile.
        case handling
        /// The answer going out as the peer takes it.
        case writing
        /// Answered and our side shut: what the peer still sends is read and dropped, so
        /// that it reads our answer rather than a connection reset.
        case draining
    }

    final class Connection {
        let conn: UnixConnection
        let since: Double
        var phase = Phase.reading
        var deadline: Double
        var watched = false
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var dropped = 0
        var peer = Caller(pid: 0, uid: 0, gid: 0, groups: [])

        init(_ conn: UnixConnection, now: Double, deadline: Double) {
            self.conn = conn
            since = now
            self.deadline = deadline
        }
    }

    let server: ControlServer
    var conns: [UInt64: Connection] = [:]
    /// Requests with handlers, by non-root uid.
    var inFlight: [UInt32: Int] = [:]
    var nextID: UInt64 = 2
    var buffer = [UInt8](repeating: 0, count: 65536)
    let timeout: Double
    let maxBytes: Int
    var logger: Logger { server.logger }

    init(server: ControlServer) {
        self.server = server
        timeout = Double(server.daemon.config.requestTimeoutMs) / 1000
        maxBytes = server.daemon.config.maxRequestBytes
    }

    func run() {
        var stopBy: Double?
        while true {
            let now = monotonicSeconds()
            let soonest = conns.values.lazy.filter { $0.phase != .handling }.map(\.deadline).min()
            let wait = [soonest, stopBy, resumeAccepting(now)].compactMap { $0.map { max($0 - now, 0) } }.min()
            for token in server.epoll.wait(timeout: wait) {
                switch token {
                case Self.listenerToken: acceptWaiting()
                case Self.wakeupToken: deliverAnswers()
                default: if let c = conns[token] { serve(c, id: token) }
                }
            }
            expire(monotonicSeconds())
            if server.stopping.load(ordering: .relaxed) {
                if stopBy == nil {
                    stopBy = monotonicSeconds() + ControlServer.stopGrace
                    pauseAccepting()
                    deliverAnswers()
                }
                // Requests not yet whole are dropped; those with a handler are answered first.
                for (id, c) in conns where c.phase == .reading || c.phase == .draining { close(id, c) }
                if conns.isEmpty || monotonicSeconds() >= stopBy! { return }
            }
        }
    }

    /// Connections that hold a place: all but those answered.
    var live: Int { conns.values.count { $0.phase != .draining } }

    /// Takes waiting connections (a few at a time, so that a flood of them cannot starve the
    /// requests already in). Past the limit, the connection that has waited longest for its
    /// request, a tenth of a second or more, is cut off for the new one. With none such, the
    /// newcomer is let in all the same, up to twice the limit; there the loop stops accepting
    /// until a place frees or one turns old enough: newcomers wait in the kernel's listen
    /// queue (connect() waits while it is full), not in a refusal loop.
    func acceptWaiting() {
        for _ in 0..<16 where !server.stopping.load(ordering: .relaxed) {
            let conn: UnixConnection
            do {
                guard let c = try server.listener.acceptIfWaiting() else { return }
                conn = c
            } catch {
                // Out of descriptors or memory: the listener stays readable, so stop watching
                // it for a tenth of a second rather than spin on it.
                if !server.stopping.load(ordering: .relaxed) { logger.error("accept: \(error); trying again in 100 ms") }
                acceptRetryAt = monotonicSeconds() + 0.1
                pauseAccepting()
                return
            }
            let now = monotonicSeconds()
            let id = nextID
            nextID += 1
            let c = Connection(conn, now: now, deadline: now + timeout)
            conns[id] = c
            let answered = conns.filter { $0.value.phase == .draining }
            if answered.count > 4 * ControlServer.maxConnections, let (oldID, old) = answered.min(by: { $0.value.since < $1.value.since }) {
                close(oldID, old)   // its answer is in the peer's queue already
            }
            admit(c, id: id)
            // Up to twice the limit, a newcomer is let in while the idle age out, so that it
            // never waits on them; past that, the listen queue holds it.
            if live > ControlServer.maxConnections && !evictOldestIdle(now) && live >= 2 * ControlServer.maxConnections {
                pauseAccepting()
                return
            }
        }
    }

    /// Reads the peer's credentials and lets it send its request, or refuses it.
    func admit(_ c: Connection, id: UInt64) {
        do {
            let p = try c.conn.peer()
            c.peer = Caller(pid: p.pid, uid: p.uid, gid: p.gid, groups: p.uid == 0 ? [] : try c.conn.peerGroups())
        } catch {
            logger.warning("control connection: \(error)")
            return close(id, c)
        }
        guard server.allowed(c.peer) else {
            logger.warning("refused peer pid \(c.peer.pid) uid \(c.peer.uid) gid \(c.peer.gid)")
            return answer(c, id: id, .error(ControlError(.forbidden, "uid \(c.peer.uid) may not use prezerod; run as root or add the uid to allowed_uids (or a group of it to allowed_gids) in the prezerod config")))
        }
        watch(c, id: id, .readable)
    }

    /// Cuts off the connection that has waited longest for its request, if it has for
    /// `evictableAfter` and nothing it sent is waiting to be read; false when every
    /// connection is young or past its request.
    func evictOldestIdle(_ now: Double) -> Bool {
        let old = conns.filter { $0.value.phase == .reading && now - $0.value.since >= ControlServer.evictableAfter }
            .sorted { $0.value.since < $1.value.since }
        for (id, c) in old {
            serve(c, id: id)   // what it sent counts: its request may be whole
            guard conns[id] != nil else { return true }
            guard c.phase == .reading else { continue }
            logger.warning("all \(ControlServer.maxConnections) connections taken: cut off one idle for \(Int((now - c.since) * 1000)) ms without a request")
            answer(c, id: id, .error(ControlError(.tooManyConnections, "cut off: no whole request within \(ControlServer.evictableAfter) s while prezerod had \(ControlServer.maxConnections) connections")))
            return true
        }
        return false
    }

    var accepting = true
    /// After an accept error, when to accept again.
    var acceptRetryAt: Double?

    func pauseAccepting() {
        guard accepting else { return }
        server.epoll.remove(server.listener.fd)
        accepting = false
    }

    /// When the loop should look again at a paused listener: once a place under twice the
    /// limit is free, or when its oldest reader may be cut off.
    func resumeAccepting(_ now: Double) -> Double? {
        guard !accepting, !server.stopping.load(ordering: .relaxed) else { return nil }
        if let at = acceptRetryAt {
            guard now >= at else { return at }
            acceptRetryAt = nil
        }
        let oldest = conns.values.lazy.filter { $0.phase == .reading }.map(\.since).min()
        if live < 2 * ControlServer.maxConnections || oldest.map({ now - $0 >= ControlServer.evictableAfter }) == true {
            do {
                try server.epoll.add(server.listener.fd, .readable, token: Self.listenerToken)
                accepting = true
                return nil
            } catch {
                logger.error("control server: \(error)")
            }
        }
        return oldest.map { $0 + ControlServer.evictableAfter } ?? now + ControlServer.evictableAfter
    }

    func serve(_ c: Connection, id: UInt64) {
        do {
            switch c.phase {
            case .reading: try read(c, id: id)
            case .writing: try write(c, id: id)
            case .draining: try drain(c, id: id)
            case .handling: break
            }
        } catch {
            if c.phase != .draining { logger.warning("control connection: \(error)") }
            close(id, c)
        }
    }

    /// Takes in what the peer sent; a whole line goes to its lane's handlers.
    func read(_ c: Connection, id: UInt64) throws(SysError) {
        while true {
            switch try c.conn.readAvailable(into: &buffer) {
            case .nothingYet:
                return
            case .end:
                return answer(c, id: id, .error(ControlError(.badRequest, "request ended before its newline")))
            case .bytes(let n):
                if let nl = buffer[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                    c.input.append(contentsOf: buffer[0..<nl])
                    return c.input.count > maxBytes ? tooLarge(c, id: id) : dispatch(c, id: id)
                }
                c.input.append(contentsOf: buffer[0..<n])
                if c.input.count > maxBytes { return tooLarge(c, id: id) }
            }
        }
    }

    func tooLarge(_ c: Connection, id: UInt64) {
        answer(c, id: id, .error(ControlError(.tooLarge, "request is larger than max_request_bytes (\(maxBytes))")))
    }

    func dispatch(_ c: Connection, id: UInt64) {
        let uid = c.peer.uid
        if uid != 0, inFlight[uid, default: 0] >= ControlServer.perUidInFlight {
            return answer(c, id: id, .error(ControlError(.tooManyConnections, "uid \(uid) has \(ControlServer.perUidInFlight) requests in progress; try again")))
        }
        let lane: ControlLane, payload: HandlerLane.Job.Payload
        if c.input.count >= ControlServer.decodeOnLoopBelow {
            (lane, payload) = (.hook, .line(c.input))
        } else {
            switch Wire.decodeRequest(c.input) {
            case .failure(let e):
                logger.warning("bad request from pid \(c.peer.pid): \(e.message)")
                return answer(c, id: id, .error(e))
            case .success(let r):
                (lane, payload) = (ControlLane(r.operation), .request(r))
            }
        }
        c.input = []
        c.phase = .handling
        if uid != 0 { inFlight[uid, default: 0] += 1 }
        unwatch(c)
        server.lanes[lane]!.submit(HandlerLane.Job(id: id, payload: payload, peer: c.peer, queued: monotonicSeconds()))
    }

    func deliverAnswers() {
        server.wakeup.lower()
        let ready = server.answers.withLock { a -> [(id: UInt64, response: Response)] in
            let all = a
            a.removeAll()
            return all
        }
        for r in ready {
            if let c = conns[r.id] { answer(c, id: r.id, r.response) }
        }
    }

    /// Sends `res` as the peer takes it, then lets the connection go.
    func answer(_ c: Connection, id: UInt64, _ res: Response) {
        if c.phase == .handling, c.peer.uid != 0 {
            inFlight[c.peer.uid, default: 1] -= 1
            if inFlight[c.peer.uid] == 0 { inFlight[c.peer.uid] = nil }
        }
        c.input = []
        c.output = Wire.encode(res)
        c.written = 0
        c.phase = .writing
        c.deadline = monotonicSeconds() + timeout
        do {
            try write(c, id: id)
        } catch {
            logger.warning("control connection: \(error)")
            close(id, c)
        }
    }

    func write(_ c: Connection, id: UInt64) throws(SysError) {
        while c.written < c.output.count {
            let n = try c.conn.writeAvailable(c.output, from: c.written)
            if n == 0 { return watch(c, id: id, .writable) }
            c.written += n
        }
        c.conn.shutdownWrite()
        c.output = []
        c.phase = .draining
        c.deadline = monotonicSeconds() + timeout
        watch(c, id: id, .readable)
        try drain(c, id: id)
    }

    func drain(_ c: Connection, id: UInt64) throws(SysError) {
        while true {
            switch try c.conn.readAvailable(into: &buffer) {
            case .nothingYet: return
            case .end: return close(id, c)
            case .bytes(let n):
                c.dropped += n
                if c.dropped > 4 * maxBytes { return close(id, c) }
            }
        }
    }

    /// A request not whole by its deadline is answered so; an answer not taken, or a peer
    /// that never closes after it, is let go.
    func expire(_ now: Double) {
        for (id, c) in conns where c.phase != .handling && c.deadline <= now {
            switch c.phase {
            case .reading: answer(c, id: id, .error(ControlError(.badRequest, "no complete request within request_timeout_ms")))
            case .writing:
                logger.warning("control connection: pid \(c.peer.pid) did not read its answer within request_timeout_ms")
                close(id, c)
            default: close(id, c)
            }
        }
    }

    func watch(_ c: Connection, id: UInt64, _ events: Epoll.Events) {
        do {
            if c.watched {
                try server.epoll.modify(c.conn.fd, events, token: id)
            } else {
                try server.epoll.add(c.conn.fd, events, token: id)
                c.watched = true
            }
        } catch {
            logger.error("control connection: \(error)")
            close(id, c)
        }
    }

    func unwatch(_ c: Connection) {
        guard c.watched else { return }
        server.epoll.remove(c.conn.fd)
        c.watched = false
    }

    /// Drops the connection; its descriptor closes with it.
    func close(_ id: UInt64, _ c: Connection) {
        unwatch(c)
        conns[id] = nil
    }
}
