import Glibc

/// A failed system call: the call, what it was applied to, and errno.
public struct SysError: Error, Sendable, Equatable, CustomStringConvertible {
    public var call: String
    public var subject: String
    public var errno: Int32

    /// `errno` defaults to the thread's current one: build it right after the call that failed.
    public init(_ call: String, _ subject: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return subject.isEmpty ? "\(call): \(reason)" : "\(call) \(subject): \(reason)"
    }
}

/// Runs a call that returns -1 on failure, retrying on EINTR.
@discardableResult
@inline(__always)
func check<T: BinaryInteger>(_ call: String, _ subject: String, _ body: () -> T) throws(SysError) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        if errno == EINTR { continue }
        throw SysError(call, subject)
    }
}
