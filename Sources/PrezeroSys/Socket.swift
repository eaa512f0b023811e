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

    /// Connects to a listening socket. The corresponding C function is `connect`.
    public init(connectingTo path: String) throws(SysError) {
        let raw = try check("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        fd = Descriptor(raw, label: path)
        var addr = try unixAddress(path)
        try check("connect", path) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
    }

    /// SO_PEERCRED: who is on the other end, as the kernel saw it at connect time.
    public func peer() throws(SysError) -> PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        try check("getsockopt(SO_PEERCRED)", fd.label) { pz_peercred(fd.raw, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// Bounds how long a read or a write may block.
    public func setTimeout(seconds: Double) throws(SysError) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        for opt in [SO_RCVTIMEO, SO_SNDTIMEO] {
            try check("setsockopt", fd.label) { setsockopt(fd.raw, SOL_SOCKET, opt, &tv, socklen_t(MemoryLayout<timeval>.size)) }
        }
    }

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

    /// Reads until the peer closes or `max` bytes arrived.
    public func readAll(max: Int) throws(SysError) -> [UInt8] {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < max {
            let n = try check("read", fd.label) { buf.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    public func writeAll(_ bytes: [UInt8]) throws(SysError) {
        var off = 0
        while off < bytes.count {
            let n = try check("write", fd.label) {
                bytes.withUnsafeBytes { send(fd.raw, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            }
            off += n
        }
    }

    /// Ends our side of the stream so the peer sees end of file.
    public func shutdownWrite() { end(Int32(SHUT_WR)) }

    /// Ends our reading: a read blocked in another thread returns end of file at once,
    /// and an answer can still be written. The descriptor stays open until its owner
    /// is done with it.
    public func stopReading() { end(Int32(SHUT_RD)) }

    private func end(_ how: Int32) { shutdown(fd.raw, how) }
}

/// A listening Unix stream socket.
public final class UnixListener: Sendable {
    public let fd: Descriptor
    public let path: String

    /// Binds `path` with `mode`. A stale socket file is replaced; any other file there is an error.
    public init(path: String, mode: UInt32) throws(SysError) {
        self.path = path
        let raw = try check("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        fd = Descriptor(raw, label: path)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw SysError("bind", "\(path) (exists and is not a socket)", errno: EEXIST) }
            if let probe = try? UnixConnection(connectingTo: path) {
                _ = probe
                throw SysError("bind", "\(path) (another prezerod is listening)", errno: EADDRINUSE)
            }
            unlink(path)
        }
        var addr = try unixAddress(path)
        // Bind under a tight umask so the socket is never reachable with looser permissions.
        let old = umask(0o177)
        defer { umask(old) }
        try check("bind", path) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        try check("chmod", path) { Glibc.chmod(path, mode_t(mode)) }
        try check("listen", path) { listen(raw, 64) }
    }

    /// Waits for the next connection. The corresponding C function is `accept4`.
    public func accept() throws(SysError) -> UnixConnection {
        let raw = try check("accept", path) { pz_accept(fd.raw) }
        return UnixConnection(Descriptor(raw, label: path))
    }

    /// Wakes a blocked accept and removes the socket file.
    public func close() {
        shutdown(fd.raw, Int32(SHUT_RDWR))
        unlink(path)
    }
}

func unixAddress(_ path: String) throws(SysError) -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw SysError("bind", path, errno: ENAMETOOLONG) }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return addr
}
