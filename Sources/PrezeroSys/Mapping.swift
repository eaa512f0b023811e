import Glibc
import PrezeroCShims
import Synchronization

/// A shared mapping of a file, unmapped when released.
public final class Mapping: Sendable {
    public nonisolated(unsafe) let base: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes of `fd` shared and writable. The corresponding C function is `mmap(MAP_SHARED)`.
    /// Shared is the only safe way for hugetlbfs: a private mapping copies on write into new pages.
    public init(_ fd: Descriptor, length: Int) throws(SysError) {
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.raw, 0)
        guard let p, p != MAP_FAILED else { throw SysError("mmap", fd.label) }
        base = p
        self.length = length
    }

    /// Anonymous MAP_HUGETLB memory, as another hugepage user would take it.
    /// The corresponding C function is `mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)`.
    public init(anonymousHugeBytes length: Int, pageShift: Int) throws(SysError) {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | 0x40000 /* MAP_HUGETLB */ | Int32(pageShift << 26)
        let p = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let p, p != MAP_FAILED else { throw SysError("mmap(MAP_HUGETLB)", "\(length) bytes") }
        base = p
        self.length = length
    }

    private let mapped = Atomic<Bool>(true)

    /// Unmaps now rather than when the last reference goes (a holder check must not see it).
    /// The corresponding C function is `munmap`; a second call does nothing.
    public func unmap() {
        if mapped.exchange(false, ordering: .relaxed) { munmap(base, length) }
    }

    deinit { unmap() }

    /// Faults every page in for writing without touching its content.
    /// The corresponding C call is `madvise(MADV_POPULATE_WRITE)`.
    public func populateWrite(offset: Int = 0, length: Int? = nil) throws(SysError) {
        let n = length ?? self.length - offset
        try check("madvise(POPULATE_WRITE)", "\(n) bytes") { madvise(base + offset, n, PZ_MADV_POPULATE_WRITE) }
    }

}

/// Filling memory and checking that it reads back as zero (tests, benchmarks).
public enum Zeroing {
    /// Whether the `n` bytes at `p` are all zero. The corresponding C function is the shim's
    /// `pz_is_zero` (`memcmp` against a block of zeros), so it runs at full speed in a debug build too.
    public static func isZero(_ p: UnsafeRawPointer, _ n: Int) -> Bool { pz_is_zero(p, n) != 0 }
    /// Sets the `n` bytes at `p` to `byte`. The corresponding C function is `memset`.
    public static func fill(_ p: UnsafeMutableRawPointer, _ n: Int, byte: UInt8) { memset(p, Int32(byte), n) }
}

/// Monotonic clock in seconds.
/// The corresponding C function is `clock_gettime(CLOCK_MONOTONIC)`.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
/// The corresponding C function is `sysconf(_SC_CLK_TCK)`.
public func clockTicksPerSecond() -> Double {
    Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Sleeps the calling thread.
/// The corresponding C function is `nanosleep`, called again for the time left after a signal.
public func sleepSeconds(_ s: Double) {
    guard s > 0 else { return }
    var want = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var left = timespec()
    while nanosleep(&want, &left) != 0 && errno == EINTR { want = left }
}
