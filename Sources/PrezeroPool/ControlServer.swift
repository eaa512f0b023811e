import Dispatch
import Glibc
import Logging
import PrezeroCore
import PrezeroHost
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// The control socket: newline-delimited JSON, one request per connection, peers checked
/// with SO_PEERCRED before a byte is read.
///
/// One thread owns every connection and every deadline in an epoll loop: it accepts, reads
/// requests, writes answers and lets connections go. An idle or slow peer costs a
/// descriptor, not a thread. A whole request goes to the handlers of its lane
/// (`ControlLane`), a small fixed pool each, so no request waits behind another lane's
/// long work; the answer comes back to the loop, which writes it without blocking.
public final class ControlServer: Sendable {
    let daemon: any RequestHandling
    let listener: UnixListener
    let logger: Logger
    static let maxConnections = 64
    /// When all places are taken, the connection that has waited longest for its
    /// request gives its place to the new one, once it has waited this long: the hook
    /// and the CLI send theirs as soon as they connect, so it is an idle or slow peer
    /// (which may come back at once: then it is the newest, and the next to go is the
    /// oldest of the others).
    static let evictableAfter = 0.1
    /// How long a stop waits for the requests being handled to be answered: with the pool's
    /// own stop, within systemd's default 30 s TimeoutStopSec.
    static let stopGrace = 5.0
    /// Requests larger than this are decoded by a handler, not on the loop: only the hook's
    /// domain XML is this large, and a tenant's megabyte of JSON must not stall every peer.
    static let decodeOnLoopBelow = 64 << 10
    /// Requests a non-root uid may have with handlers at once; more are refused at once
    /// (too_many_connections, asked again), so one tenant cannot fill every lane.
    static let perUidInFlight = 16

    let epoll: Epoll
    let wakeup: Wakeup
    /// Answers the handlers have ready for the loop, by connection.
    let answers = Locked<[(id: UInt64, response: Response)]>([])
    let lanes: [ControlLane: HandlerLane]
    let stopping = Atomic<Bool>(false)
    let stopped = DispatchSemaphore(value: 0)

    /// Binds the control socket (root-only, or 0660 with `socket_group`), creating its directory;
    /// nothing is accepted until `start`.
    public init(daemon: any RequestHandling, logger: Logger) throws {
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
        try listener.setNonBlocking()
        epoll = try Epoll()
        wakeup = try Wakeup()
        lanes = Dictionary(uniqueKeysWithValues: ControlLane.allCases.map { ($0, HandlerLane($0)) })
        self.daemon = daemon
        self.logger = logger
    }

    /// Starts the lanes' handler threads and the epoll loop's thread, and begins accepting.
    public func start() throws {
        try epoll.add(listener.fd, .readable, token: EventLoop.listenerToken)
        try epoll.add(wakeup.fd, .readable, token: EventLoop.wakeupToken)
        for lane in lanes.values {
            for _ in 0..<lane.lane.handlers { try startThread { [self] in handle(lane) } }
        }
        try startThread { [self] in
            EventLoop(server: self).run()
            stopped.signal()
        }
        logger.info("listening on \(listener.path)")
    }

    /// Stops accepting (the socket file goes at once), answers the requests being handled
    /// (for up to `stopGrace` seconds), and lets every connection go.
    public func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        listener.close()
        // Requests not yet started never start: each is answered that prezerod is stopping.
        for lane in lanes.values { lane.stop() }
        wakeup.raise()
        if stopped.wait(timeout: .now() + ControlServer.stopGrace + 1) == .timedOut {
            logger.warning("control server: requests still handled after \(Int(ControlServer.stopGrace)) s; stopping without their answers")
        }
    }

    func allowed(_ c: Caller) -> Bool {
        CallerPolicy.admitted(c, allowedUids: daemon.config.allowedUids, allowedGids: daemon.config.allowedGids)
    }

    /// A handler thread of `lane`: takes the lane's requests in order until the server stops.
    /// A request that waited past `request_timeout_ms` for a handler is not run: its client has
    /// given up or is about to, and it is told so (nothing was done; it may ask again).
    func handle(_ lane: HandlerLane) {
        let timeout = Double(daemon.config.requestTimeoutMs) / 1000
        while let (job, stopping) = lane.next() {
            let res: Response
            if stopping {
                res = .error(ControlError(.tooManyConnections, "prezerod is stopping; nothing was done"))
            } else if monotonicSeconds() - job.queued > timeout {
                logger.warning("\(lane.lane.rawValue) lane: a request from pid \(job.peer.pid) waited past request_timeout_ms for a handler; not run")
                res = .error(ControlError(.tooManyConnections, "prezerod was too busy to start this request within request_timeout_ms; nothing was done; try again"))
            } else {
                res = answer(job)
            }
            answers.withLock { $0.append((job.id, res)) }
            wakeup.raise()
        }
    }

    func answer(_ job: HandlerLane.Job) -> Response {
        let request: Request
        switch job.payload {
        case .request(let r): request = r
        case .line(let line):
            switch Wire.decodeRequest(line) {
            case .failure(let e):
                logger.warning("bad request from pid \(job.peer.pid): \(e.message)")
                return .error(e)
            case .success(let r): request = r
            }
        }
        let res = daemon.handle(request, from: job.peer)
        if case .error(let e) = res {
            logger.warning("\(request.operation.rawValue) from pid \(job.peer.pid) uid \(job.peer.uid) refused: \(e.message)")
        }
        return res
    }
}
