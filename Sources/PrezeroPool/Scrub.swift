import Logging
import PrezeroCore
import PrezeroSys

/// Zeroing a released file in place, and proving it zero.
enum Scrub {
    /// Measures memset against non-temporal stores on this host and returns the faster,
    /// unless the config names one.
    static func chooseMethod(_ wanted: ZeroMethod, logger: Logger) -> ZeroMethod {
        guard wanted == .auto else {
            logger.info("scrub zeroing method \(wanted.rawValue) (from config)")
            return wanted
        }
        let m = measure(bytes: 64 << 20, rounds: 3)
        let pick: ZeroMethod = m.nontemporal > m.memset ? .nontemporal : .memset
        logger.info("scrub zeroing method \(pick.rawValue) (measured: memset \(Int(m.memset / 1e6)) MB/s, non-temporal \(Int(m.nontemporal / 1e6)) MB/s)")
        return pick
    }

    /// Best-of-`rounds` throughput of each method, in bytes per second, over an anonymous buffer.
    static func measure(bytes: Int, rounds: Int) -> (memset: Double, nontemporal: Double) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        defer { p.deallocate() }
        Zeroing.fill(p, bytes, byte: 1)  // fault it in first
        func best(_ f: (UnsafeMutableRawPointer, Int) -> Void) -> Double {
            var b = 0.0
            for _ in 0..<rounds {
                let t = monotonicSeconds()
                f(p, bytes)
                b = max(b, Double(bytes) / max(monotonicSeconds() - t, 1e-9))
            }
            return b
        }
        return (best(Zeroing.memsetZero), best(Zeroing.nontemporal))
    }

    static func zero(_ method: ZeroMethod, _ p: UnsafeMutableRawPointer, _ n: Int) {
        if method == .nontemporal { Zeroing.nontemporal(p, n) } else { Zeroing.memsetZero(p, n) }
    }

    /// Checks that a mapping reads back as zero: every byte (`full`), or the first,
    /// last and a middle cache line of every page (`sample`).
    static func verify(_ map: Mapping, pageSize: Int, mode: VerifyMode) -> Bool {
        if mode == .full { return Zeroing.isZero(map.base, map.length) }
        let line = 64
        var off = 0
        while off < map.length {
            for at in [off, off + pageSize / 2, off + pageSize - line] where at + line <= map.length {
                if !Zeroing.isZero(map.base + at, line) { return false }
            }
            off += pageSize
        }
        return true
    }
}
