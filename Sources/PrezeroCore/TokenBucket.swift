/// A token bucket: `rate` bytes per second, bursts up to `burst` bytes.
/// Pure: the caller passes the clock.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: Double

    /// - Parameter full: start with a full bucket (a burst is allowed at once) or an empty
    ///   one (the average rate from the first byte on is `rate`, as a budget means).
    public init(rate: Double, burst: Double, now: Double, full: Bool = true) {
        self.rate = rate
        self.burst = burst
        self.tokens = full ? burst : 0
        self.last = now
    }

    /// Takes `bytes` and returns how long to wait (seconds) before using them.
    public mutating func take(_ bytes: Double, now: Double) -> Double {
        guard rate > 0 else { return 0 }
        tokens = min(burst, tokens + (now - last) * rate)
        last = now
        tokens -= bytes
        return tokens >= 0 ? 0 : -tokens / rate
    }
}
