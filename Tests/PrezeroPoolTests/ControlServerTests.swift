import Dispatch
import Glibc
import Logging
import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroSys
import Synchronization
import Testing

/// The control server in-process, with no root and no huge pages: its own listening socket
/// in a temporary directory, real connections, and a scripted handler in place of the pool
/// (`RequestHandling`), so that what is tested is the server: admission, lanes, limits,
/// deadlines, eviction and stopping.
/// Serialized: each test times its server against its own threads only.
@Suite("control server: connections, lanes, limits and stops, in-process", .serialized)
struct ControlServerTests {
    /// Answers status and make-room; make-room (the admin lane) waits at `gate` until opened,
    /// as long work would.
    final class Scripted: RequestHandling, @unchecked Sendable {
        let config: Config
        let seen = Mutex<[(Request, Caller)]>([])
        let gate = DispatchSemaphore(value: 0)
        let opened = Atomic<Bool>(false)
        init(_ c: Config) { config = c }
        func handle(_ r: Request, from caller: Caller) -> Response {
            seen.withLock { $0.append((r, caller)) }
            switch r {
            case .status: return .status(StatusResult(pid: 1, mounts: []))
            case .makeRoom:
                while !opened.load(ordering: .relaxed) { _ = gate.wait(timeout: .now() + .milliseconds(10)) }
                return .makeRoom(MakeRoomResult(freed: [:], free: [:]))
            default: return .error(ControlError(.badRequest, "scripted: not this one"))
            }
        }
        func open() { opened.store(true, ordering: .relaxed) }
        var count: Int { seen.withLock { $0.count } }
    }

    /// A server on a socket in a fresh directory; `body` gets it and its handler.
    func withServer(_ tune: (inout Config) -> Void = { _ in }, _ body: (ControlServer, Scripted) throws -> Void) throws {
        let base = "/tmp/prezero-control-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(base, mode: 0o755)
        chmod(base, 0o755)  // whatever the umask: perUidCap's tenant thread goes through it
        defer { Files.removeTree(base) }
        var c = Config()
        c.socket = base + "/prezerod.sock"
        c.requestTimeoutMs = 2000
        // A test run by a user other than root reaches its own socket as that user.
        if getuid() != 0 { c.allowedUids = [getuid()] }
        tune(&c)
        let h = Scripted(c)
        let s = try ControlServer(daemon: h, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try s.start()
        defer {
            h.open()
            s.stop()
        }
        try body(s, h)
    }

    func connect(_ s: Config) throws -> UnixConnection { try UnixConnection(connectingTo: s.socket, deadline: monotonicSeconds() + 5) }

    /// Sends `bytes` on a new connection and reads the whole answer.
    func ask(_ c: Config, _ bytes: [UInt8]) throws -> Response {
        let conn = try connect(c)
        try conn.writeAll(bytes, deadline: monotonicSeconds() + 5)
        return try read(conn)
    }

    func read(_ conn: UnixConnection, within: Double = 5) throws -> Response {
        let answer = try conn.readAll(max: 1 << 20, deadline: monotonicSeconds() + within)
        return try Wire.decode(Response.self, answer)
    }

    /// Three make-room requests: the admin lane's two handlers take two (and hold them until
    /// `h.open()`); the third waits in the lane.
    func fillAdminLane(_ h: Scripted) throws -> [UnixConnection] {
        let room = Wire.encode(Request.makeRoom(MakeRoomRequest(pages: ["0": 1])))
        let conns = try (0..<3).map { _ in try connect(h.config) }
        for c in conns { try c.writeAll(room, deadline: monotonicSeconds() + 5) }
        while h.count < 2 { sleepSeconds(0.005) }
        return conns
    }

    func code(_ r: Response) -> ControlError.Code? { if case .error(let e) = r { e.code } else { nil } }

    @Test("a request is answered with the peer's credentials from SO_PEERCRED, not from what it sends")
    func answered() throws {
        try withServer { _, h in
            let r = try ask(h.config, Wire.encode(Request.status))
            guard case .status = r else { throw TestError("status answered \(r)") }
            let (req, caller) = try #require(h.seen.withLock { $0.first })
            #expect(req == .status && caller.uid == getuid() && caller.pid == getpid() && caller.gid == getgid())
        }
    }

    @Test("garbage, a line past max_request_bytes and a request cut short are refused, and never reach the handler")
    func refusedBeforeTheHandler() throws {
        try withServer({ $0.maxRequestBytes = 4096 }) { _, h in
            #expect(code(try ask(h.config, Array("hello\n".utf8))) == .badRequest)
            #expect(code(try ask(h.config, [UInt8](repeating: UInt8(ascii: "x"), count: 5000))) == .tooLarge)
            let cut = try connect(h.config)
            try cut.writeAll(Array(#"{"v":1,"op":"sta"#.utf8), deadline: monotonicSeconds() + 5)
            cut.shutdownWrite()
            #expect(code(try read(cut)) == .badRequest)
            #expect(h.count == 0, "the handler saw \(h.count) request(s)")
        }
    }

    @Test("a peer that never finishes its line is answered at request_timeout_ms; others are served meanwhile")
    func slowPeer() throws {
        // The slow peer's deadline is far above a status's time even on a loaded machine.
        try withServer({ $0.requestTimeoutMs = 1500 }) { _, h in
            let slow = try connect(h.config)
            try slow.writeAll(Array(#"{"v":1,"#.utf8), deadline: monotonicSeconds() + 5)
            let t = monotonicSeconds()
            guard case .status = try ask(h.config, Wire.encode(Request.status)) else { throw TestError("status not answered") }
            #expect(monotonicSeconds() - t < 1.2, "status waited behind the slow peer")
            let r = try read(slow)
            #expect(code(r) == .badRequest && monotonicSeconds() - t >= 1.2, "\(r)")
        }
    }

    @Test("long work in one lane (make-room) never delays another (status); the lane's third request waits its turn")
    func lanes() throws {
        try withServer { _, h in
            let held = try fillAdminLane(h)
            let t = monotonicSeconds()
            guard case .status = try ask(h.config, Wire.encode(Request.status)) else { throw TestError("status not answered") }
            #expect(monotonicSeconds() - t < 2, "status waited behind make-room, which is held until the test lets it go")
            sleepSeconds(0.1)
            #expect(h.count == 3, "only the status joined the two make-rooms: \(h.count)")
            h.open()
            for c in held {
                let r = try read(c)
                guard case .makeRoom = r else { throw TestError("make-room answered \(r)") }
            }
        }
    }

    @Test("past 64 connections the oldest idle one is cut off for a newcomer, which is answered")
    func evictsIdle() throws {
        try withServer { _, h in
            let idle = try (0..<70).map { _ in try connect(h.config) }
            sleepSeconds(0.2)
            guard case .status = try ask(h.config, Wire.encode(Request.status)) else { throw TestError("the newcomer was not answered") }
            // The oldest idle one was cut off, and told so (it may ask again).
            let r = try read(idle[0], within: 2)
            guard case .error(let e) = r else { throw TestError("the oldest idle connection was answered \(r)") }
            #expect(e.code == .tooManyConnections && e.message.hasPrefix("cut off"), "\(e)")
        }
    }

    @Test("a stop answers a queued request 'stopping' without running it, and gives the ones being handled their answers")
    func stopAnswersQueued() throws {
        try withServer { s, h in
            let conns = try fillAdminLane(h)
            sleepSeconds(0.05)
            let stopped = Atomic<Bool>(false)
            DispatchQueue.global().async {
                s.stop()
                stopped.store(true, ordering: .relaxed)
            }
            // The socket file goes first, then the lanes stop: wait for it, not for a time.
            while Files.status(followingPath: h.config.socket) != nil { sleepSeconds(0.005) }
            sleepSeconds(0.05)
            h.open()
            let answers = try conns.map { try read($0) }
            #expect(answers.filter { if case .makeRoom = $0 { true } else { false } }.count == 2, "\(answers)")
            let refused = answers.compactMap { if case .error(let e) = $0 { e } else { nil } }
            #expect(refused.count == 1 && refused[0].code == .tooManyConnections && refused[0].message.contains("stopping"), "\(refused)")
            #expect(h.count == 2, "the queued request never ran")
            while !stopped.load(ordering: .relaxed) { sleepSeconds(0.01) }
        }
    }

    @Test("a uid other than root has at most 16 requests in progress; the 17th is refused at once, and nothing of it runs")
    func perUidCap() throws {
        let tenant: UInt32 = 4242
        try withServer({ $0.allowedUids += [tenant] }) { _, h in
            chmod(h.config.socket, 0o666)  // this test's own socket: let the tenant thread reach it
            let room = Wire.encode(Request.makeRoom(MakeRoomRequest(pages: ["0": 1])))
            // As a non-root test user, this process is the tenant; as root, a thread becomes one.
            func asTenant<T: Sendable>(_ body: @escaping @Sendable () -> T) throws -> T {
                getuid() == 0 ? try ThreadIdentity.onThreadAs(uid: tenant, gid: tenant, body) : body()
            }
            let config = h.config
            let conns = try asTenant { Result { try (0..<17).map { _ in try UnixConnection(connectingTo: config.socket, deadline: monotonicSeconds() + 5) } } }.get()
            for c in conns.prefix(16) { try c.writeAll(room, deadline: monotonicSeconds() + 5) }
            while h.count < 2 { sleepSeconds(0.005) }
            sleepSeconds(0.1)
            try conns[16].writeAll(room, deadline: monotonicSeconds() + 5)
            let r = try read(conns[16], within: 1)
            #expect(code(r) == .tooManyConnections, "\(r)")
            h.open()
            for c in conns.prefix(16) { _ = try read(c) }
            #expect(h.count == 16 && h.seen.withLock { $0.allSatisfy { $0.1.uid != 0 } })
        }
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
