import Glibc
import PrezeroCShims

/// An epoll set: one thread waits on many descriptors, each known by a token.
/// Level-triggered: a descriptor still readable (or writable) is reported again.
/// The corresponding C functions are `epoll_create1`, `epoll_ctl` and `epoll_wait`.
public final class Epoll: Sendable {
    /// What to watch a descriptor for, as epoll event bits.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        /// Events from raw epoll bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: UInt32(EPOLLIN.rawValue))
        /// A hang-up or an error is reported whether asked for or not; the read or write
        /// that follows says which.
        public static let writable = Events(rawValue: UInt32(EPOLLOUT.rawValue))
    }

    let fd: Descriptor

    /// A new, empty set, closed on exec. The corresponding C function is `epoll_create1(EPOLL_CLOEXEC)`.
    public init() throws(SysError) {
        fd = Descriptor(try check("epoll_create1", "") { pz_epoll_create() }, label: "epoll")
    }

    /// Watches `d` for `events`, reporting `token`.
    /// The corresponding C function is `epoll_ctl(EPOLL_CTL_ADD)`.
    public func add(_ d: Descriptor, _ events: Events, token: UInt64) throws(SysError) {
        try control(EPOLL_CTL_ADD, d, events, token)
    }

    /// Watches `d` for other events.
    /// The corresponding C function is `epoll_ctl(EPOLL_CTL_MOD)`.
    public func modify(_ d: Descriptor, _ events: Events, token: UInt64) throws(SysError) {
        try control(EPOLL_CTL_MOD, d, events, token)
    }

    /// Stops watching `d` (closing it does as well, when no copy of it is open).
    /// The corresponding C function is `epoll_ctl(EPOLL_CTL_DEL)`; a failure is ignored.
    public func remove(_ d: Descriptor) {
        _ = pz_epoll_ctl(fd.raw, EPOLL_CTL_DEL, d.raw, 0, 0)
    }

    private func control(_ op: Int32, _ d: Descriptor, _ events: Events, _ token: UInt64) throws(SysError) {
        _ = try check("epoll_ctl", d.label) { pz_epoll_ctl(fd.raw, op, d.raw, events.rawValue, token) }
    }

    /// Waits up to `timeout` seconds (for ever when nil) for events: the tokens of the
    /// descriptors that have some; none on a timeout or a signal.
    /// At most 64 tokens a call. The corresponding C function is `epoll_wait`.
    public func wait(timeout: Double?) -> [UInt64] {
        var tokens = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        let ms = timeout.map { Int32(min(max(($0 * 1000).rounded(.up), 0), 60_000)) } ?? -1
        let n = tokens.withUnsafeMutableBufferPointer { t in
            events.withUnsafeMutableBufferPointer { e in pz_epoll_wait(fd.raw, t.baseAddress, e.baseAddress, 64, ms) }
        }
        guard n > 0 else { return [] }
        return Array(tokens[0..<Int(n)])
    }
}

/// An eventfd: other threads wake an epoll loop by raising it; the loop lowers it.
/// The corresponding C function is `eventfd`.
public final class Wakeup: Sendable {
    public let fd: Descriptor

    /// A new eventfd, lowered; non-blocking and closed on exec.
    /// The corresponding C function is `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    public init() throws(SysError) {
        fd = Descriptor(try check("eventfd", "") { pz_eventfd() }, label: "eventfd")
    }

    /// Makes the eventfd readable, so the loop's `epoll_wait` returns; safe from any thread.
    /// The corresponding C function is `write` (adds 1 to the counter).
    public func raise() {
        var one: UInt64 = 1
        _ = write(fd.raw, &one, 8)
    }

    /// Resets the counter to 0, so the eventfd stops being reported readable.
    /// The corresponding C function is `read`; on a lowered one it fails with EAGAIN, ignored.
    public func lower() {
        var n: UInt64 = 0
        _ = read(fd.raw, &n, 8)
    }
}
