import Glibc
import PrezeroCShims

/// Starts a detached OS thread: node workers need a thread of their own to pin
/// and to bind, which a task executor cannot give.
/// The corresponding C functions are `pthread_create` and `pthread_detach`.
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

/// Shared or exclusive access, writers first: a node's fills share it, and a take-back's
/// count of the pages its punch freed takes it alone, without waiting for the fills to pause
/// on their own. The corresponding C functions are `pthread_rwlock_rdlock` and `_wrlock`.
public final class SharedLock: @unchecked Sendable {
    private let lock: UnsafeMutableRawPointer

    /// A new lock; running out of memory for it ends the process.
    /// The corresponding C function is `pthread_rwlock_init`, with `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`.
    public init() {
        guard let l = pz_rwlock_new() else { fatalError("out of memory for a lock") }
        lock = l
    }

    deinit { pz_rwlock_free(lock) }

    /// Runs `body` holding the lock, alone when `exclusive`, else shared with other readers.
    /// The corresponding C functions are `pthread_rwlock_wrlock` or `_rdlock`, then `_unlock`.
    public func with<T, E: Error>(exclusive: Bool, _ body: () throws(E) -> T) throws(E) -> T {
        pz_rwlock_lock(lock, exclusive ? 1 : 0)
        defer { pz_rwlock_unlock(lock) }
        return try body()
    }
}

/// A value behind a plain pthread mutex. Synchronization's `Mutex` is a priority-inheritance
/// futex on Linux: under contention each hand-off goes through the kernel's rt_mutex, and its
/// slow path spins; with a node's fill workers, the monitor and the request handlers on one
/// pool state, that cost a fifth of prezerod's CPU under load (perf, here). The corresponding
/// C functions are `pthread_mutex_lock` and `_unlock`.
public final class Locked<Value>: @unchecked Sendable {
    private let lock: UnsafeMutableRawPointer
    private var value: Value

    /// Puts `value` behind a new lock; running out of memory for it ends the process.
    /// The corresponding C function is `pthread_mutex_init`, with `PTHREAD_MUTEX_ADAPTIVE_NP`.
    public init(_ value: Value) {
        guard let l = pz_mutex_new() else { fatalError("out of memory for a lock") }
        lock = l
        self.value = value
    }

    deinit { pz_mutex_free(lock) }

    /// Runs `body` on the value, holding the lock. The corresponding C functions are
    /// `pthread_mutex_lock` and `_unlock`.
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pz_mutex_lock(lock)
        defer { pz_mutex_unlock(lock) }
        return try body(&value)
    }
}
