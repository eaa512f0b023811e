import Glibc

/// Starts a detached OS thread: node workers need a thread of their own to pin
/// and to bind, which a task executor cannot give.
public func startThread(_ body: @escaping @Sendable () -> Void) throws(SysError) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let b = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        b.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<AnyObject>.fromOpaque(box).release()
        throw SysError("pthread_create", "", errno: rc)
    }
    pthread_detach(tid)
}
