import Glibc
import PrezeroCShims

/// Credentials of the process on the other end of a Unix socket.
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
}

/// A connected Unix stream socket.
public final class UnixConnection: Sendable {
    public let fd: Descriptor

    init(_ fd: Descriptor) { self.fd = fd }

    /// Connects to a listening socket, giving up at `deadline` (monotonic seconds) with
    /// ETIMEDOUT. An AF_UNIX connect never returns EINPROGRESS: a blocking one waits for
    /// room in a full listen queue for up to SO_SNDTIMEO (for ever when unset), and a
    /// non-blocking one fails at once with EAGAIN. So the time left is set as both
    /// timeouts before each try, and EAGAIN is tried again until the deadline. The
    /// timeouts stay set: reads and writes are bounded as well.
    /// The corresponding C function is `connect`.
    public init(connectingTo path: String, deadline: Double) throws(SysError) {
        let raw = try check("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        fd = Descriptor(raw, label: path)
        var addr = try unixAddress(path, for: "connect")
        while true {
            let left = deadline - monotonicSeconds()
            guard left > 0 else { throw SysError("connect", "\(path) (its listen queue stayed full)", errno: ETIMEDOUT) }
            try setTimeout(seconds: left)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if r == 0 { return }
            let e = errno
            guard e == EAGAIN || e == EINTR else { throw SysError("connect", path, errno: e) }
            // The kernel waits out the timeout itself; an early EAGAIN (the timeout rounded
            // to a clock tick) must not spin.
            if e == EAGAIN { sleepSeconds(min(0.001, max(deadline - monotonicSeconds(), 0))) }
        }
    }

    /// SO_PEERCRED: who is on the other end, as the kernel saw it at connect time.
    /// The corresponding C function is `getsockopt(SO_PEERCRED)`.
    public func peer() throws(SysError) -> PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        try check("getsockopt(SO_PEERCRED)", fd.label) { pz_peercred(fd.raw, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// SO_PEERGROUPS: the peer's supplementary groups, as the kernel saw them at connect
    /// time (as SO_PEERCRED does its uid): no /proc read, so no race with the peer's exit.
    /// The corresponding C function is `getsockopt(SO_PEERGROUPS)`.
    public func peerGroups() throws(SysError) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: 64)
        while true {
            let n = try check("getsockopt(SO_PEERGROUPS)", fd.label) {
                out.withUnsafeMutableBufferPointer { pz_peergroups(fd.raw, $0.baseAddress, Int32($0.count)) }
            }
            if Int(n) <= out.count { return Array(out[0..<Int(n)]) }
            out = [UInt32](repeating: 0, count: Int(n))
        }
    }

    /// Bounds how long a read, a write or a connect may block; at least 1 ms, since a
    /// timeout of 0 means for ever.
    /// The corresponding C function is `setsockopt`, for `SO_RCVTIMEO` and `SO_SNDTIMEO`.
    public func setTimeout(seconds: Double) throws(SysError) {
        let s = min(max(seconds, 0.001), 1e9)
        var tv = timeval(tv_sec: Int(s), tv_usec: Int((s - Double(Int(s))) * 1e6))
        for opt in [SO_RCVTIMEO, SO_SNDTIMEO] {
            try check("setsockopt", fd.label) { setsockopt(fd.raw, SOL_SOCKET, opt, &tv, socklen_t(MemoryLayout<timeval>.size)) }
        }
    }

    /// What `readLine` found.
    public enum LineResult: Equatable {
        case line([UInt8])
        /// The peer closed before sending a newline; any partial bytes are dropped.
        case closed
        /// More than `max` bytes came without a newline.
        case tooLong
        /// The deadline passed first.
        case timedOut
    }

    /// Reads one newline-terminated line of at most `max` bytes (newline excluded).
    /// Reads one byte past a line are not expected: the protocol is one request, one answer.
    /// With a `deadline` (monotonic seconds) the whole line must come by then, however
    /// the peer spaces its bytes: a timeout per read alone lets a peer that sends a
    /// byte a second hold the connection for as long as it likes.
    /// The corresponding C function is `read`.
    public func readLine(max: Int, deadline: Double? = nil) throws(SysError) -> LineResult {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            if let deadline {
                let left = deadline - monotonicSeconds()
                guard left > 0 else { return .timedOut }
                try setTimeout(seconds: Swift.max(left, 0.001))
            }
            let n: Int
            do {
                n = try check("read", fd.label) { buf.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            } catch where deadline != nil && (error.errno == EAGAIN || error.errno == EWOULDBLOCK) {
                return .timedOut
            }
            if n == 0 { return .closed }
            if let nl = buf[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                out.append(contentsOf: buf[0..<nl])
                return out.count > max ? .tooLong : .line(out)
            }
            out.append(contentsOf: buf[0..<n])
            if out.count > max { return .tooLong }
        }
    }

    /// Reads until the peer closes or `max` bytes arrived. With a `deadline` (monotonic
    /// seconds) all of it must come by then, however the peer spaces its bytes; ETIMEDOUT
    /// when it does not.
    /// The corresponding C function is `read`.
    public func readAll(max: Int, deadline: Double? = nil) throws(SysError) -> [UInt8] {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < max {
            try bound(by: deadline, "read")
            let n: Int
            do {
                n = try check("read", fd.label) { buf.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            } catch where deadline != nil && (error.errno == EAGAIN || error.errno == EWOULDBLOCK) {
                throw SysError("read", fd.label, errno: ETIMEDOUT)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Writes every byte; with a `deadline`, by then (ETIMEDOUT when not).
    /// The corresponding C function is `send(MSG_NOSIGNAL)`: a closed peer is EPIPE, not SIGPIPE.
    public func writeAll(_ bytes: [UInt8], deadline: Double? = nil) throws(SysError) {
        var off = 0
        while off < bytes.count {
            try bound(by: deadline, "write")
            let n: Int
            do {
                n = try check("write", fd.label) {
                    bytes.withUnsafeBytes { send(fd.raw, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
                }
            } catch where deadline != nil && (error.errno == EAGAIN || error.errno == EWOULDBLOCK) {
                throw SysError("write", fd.label, errno: ETIMEDOUT)
            }
            off += n
        }
    }

    /// Sets the timeouts to the time left before `deadline`; ETIMEDOUT once it has passed.
    private func bound(by deadline: Double?, _ call: String) throws(SysError) {
        guard let deadline else { return }
        let left = deadline - monotonicSeconds()
        guard left > 0 else { throw SysError(call, fd.label, errno: ETIMEDOUT) }
        try setTimeout(seconds: left)
    }

    /// One request, one answer, as prezero-hook and the CLI ask prezerod: connects,
    /// sends `request`, ends the sending side and reads until the peer closes, all by
    /// `deadline` (monotonic seconds). ETIMEDOUT when it passes, from the `connect`
    /// (the listen queue is full: the listener is stopped or hung), the `write` or the `read`.
    /// The corresponding C functions are `connect`, `send`, `shutdown(SHUT_WR)` and `read`.
    public static func exchange(path: String, _ request: [UInt8], maxAnswer: Int, deadline: Double) throws(SysError) -> [UInt8] {
        let conn = try UnixConnection(connectingTo: path, deadline: deadline)
        try conn.writeAll(request, deadline: deadline)
        conn.shutdownWrite()
        return try conn.readAll(max: maxAnswer, deadline: deadline)
    }

    /// What a non-blocking read found.
    public enum Available: Equatable {
        case bytes(Int)
        case nothingYet
        case end
    }

    /// On a non-blocking connection: reads what has arrived into `buf`, without waiting.
    /// The corresponding C function is `read`.
    public func readAvailable(into buf: inout [UInt8]) throws(SysError) -> Available {
        do {
            let n = try check("read", fd.label) { buf.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            return n == 0 ? .end : .bytes(n)
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return .nothingYet
        }
    }

    /// On a non-blocking connection: writes what the socket takes now of `bytes[from...]`;
    /// how many bytes it took (0 when it is full).
    /// The corresponding C function is `send(MSG_NOSIGNAL)`.
    public func writeAvailable(_ bytes: [UInt8], from: Int) throws(SysError) -> Int {
        do {
            return try check("write", fd.label) {
                bytes.withUnsafeBytes { send(fd.raw, $0.baseAddress! + from, $0.count - from, Int32(MSG_NOSIGNAL)) }
            }
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return 0
        }
    }

    /// Ends our side of the stream so the peer sees end of file.
    /// The corresponding C function is `shutdown(SHUT_WR)`.
    public func shutdownWrite() { end(Int32(SHUT_WR)) }

    private func end(_ how: Int32) { shutdown(fd.raw, how) }
}

/// A listening Unix stream socket.
public final class UnixListener: Sendable {
    public let fd: Descriptor
    public let path: String

    /// Binds `path` with `mode`, and `group` as its group when given. A stale socket file is
    /// replaced; any other file there is an error.
    /// The corresponding C functions are `socket`, `bind`, `lchown`, `chmod`, `rename` and `listen`.
    public init(path: String, mode: UInt32, group: UInt32? = nil) throws(SysError) {
        self.path = path
        let raw = try check("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        fd = Descriptor(raw, label: path)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw SysError("bind", "\(path) (exists and is not a socket)", errno: EEXIST) }
            // Bounded: a listener that is stopped or hung, with its queue full, is still there.
            var refused: SysError?
            do throws(SysError) {
                _ = try UnixConnection(connectingTo: path, deadline: monotonicSeconds() + 1)
            } catch {
                refused = error
            }
            switch refused?.errno {
            case nil: throw SysError("bind", "\(path) (another prezerod is listening)", errno: EADDRINUSE)
            case ETIMEDOUT: throw SysError("bind", "\(path) (another prezerod is listening but not accepting: stopped or hung?)", errno: EADDRINUSE)
            default: break
            }
            unlink(path)
        }
        // The socket is bound in a new directory of this process's alone (0700), given its group
        // and mode there, and only then renamed to `path`: it is never reachable with looser
        // permissions, and no umask (which is the whole process's) is changed for it.
        _ = try unixAddress(path, for: "bind")  // `path` itself is checked before anything is made
        let parent = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let privateDir = "\(parent.isEmpty ? "" : parent)/.pz\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        try check("mkdir", privateDir) { mkdir(privateDir, 0o700) }
        defer { rmdir(privateDir) }
        let bound = privateDir + "/s"
        var addr = try unixAddress(bound, for: "bind")
        do throws(SysError) {
            try check("chmod", privateDir) { Glibc.chmod(privateDir, 0o700) }
            try check("bind", path) {
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            if let group { try check("chown", path) { Glibc.lchown(bound, UInt32.max, group) } }
            try check("chmod", path) { Glibc.chmod(bound, mode_t(mode)) }
            try check("rename", path) { rename(bound, path) }
        } catch {
            unlink(bound)
            throw error
        }
        try check("listen", path) { listen(raw, 64) }
    }

    /// Makes `acceptIfWaiting` never block. The corresponding C function is `fcntl`.
    public func setNonBlocking() throws(SysError) {
        _ = try check("fcntl(O_NONBLOCK)", path) { pz_set_nonblocking(fd.raw) }
    }

    /// The next waiting connection, itself non-blocking, or nil when none waits. The
    /// corresponding C function is `accept4`.
    public func acceptIfWaiting() throws(SysError) -> UnixConnection? {
        do {
            let raw = try check("accept", path) { pz_accept_nonblocking(fd.raw) }
            return UnixConnection(Descriptor(raw, label: path))
        } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return nil
        }
    }

    /// Ends listening and removes the socket file.
    /// The corresponding C functions are `shutdown(SHUT_RDWR)` and `unlink`.
    public func close() {
        shutdown(fd.raw, Int32(SHUT_RDWR))
        unlink(path)
    }
}

func unixAddress(_ path: String, for call: String) throws(SysError) -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    // A NUL would cut the path short: the socket bound or reached would be another one.
    guard !bytes.contains(0) else { throw SysError(call, path, errno: EINVAL) }
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw SysError(call, path, errno: ENAMETOOLONG) }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return addr
}
