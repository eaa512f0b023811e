/// Median and range of repeated measurements.
public struct Spread: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double
    public var runs: Int

    /// The spread of `xs`; all 0 when there are none.
    public init(_ xs: [Double]) {
        let s = xs.sorted()
        runs = s.count
        min = s.first ?? 0
        max = s.last ?? 0
        median = s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A distribution-free ~95% confidence interval for the median: the order statistics
    /// n/2 ∓ 0.98·√n (ranks from 1), clamped to the sample.
    public static func medianInterval(_ xs: [Double]) -> (low: Double, high: Double) {
        let s = xs.sorted()
        guard !s.isEmpty else { return (0, 0) }
        let n = Double(s.count), half = 0.98 * n.squareRoot()
        let lo = Swift.max(1, Int((n / 2 - half).rounded(.down))), hi = Swift.min(s.count, Int((n / 2 + half).rounded(.up)) + 1)
        return (s[lo - 1], s[hi - 1])
    }

    /// `median [min–max]` with `digits` after the point.
    public func text(_ digits: Int = 3) -> String {
        "\(Figures.fixed(median, digits)) [\(Figures.fixed(min, digits))–\(Figures.fixed(max, digits))]"
    }
}

/// Numbers as text, on the standard library alone (no String(format:)).
public enum Figures {
    /// `x` rounded to `digits` places after the point.
    public static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return "\(x)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (abs(x) * scale).rounded()
        guard r < 9e18 else { return "\(x)" }
        let n = UInt64(r)
        let whole = n / UInt64(scale), frac = n % UInt64(scale)
        var f = String(frac)
        while f.count < digits { f = "0" + f }
        return (x < 0 && n > 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + f : "")
    }

    /// A rate in bytes per second as GB/s (10^9), as the kernel's and vendors' figures are.
    public static func gbps(_ bytesPerSecond: Double) -> String { fixed(bytesPerSecond / 1e9, 2) + " GB/s" }

    /// The `q` quantile (0…1) of sorted `xs`, by the nearest rank.
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let i = Int((Double(sorted.count) * q).rounded(.up)) - 1
        return sorted[Swift.min(Swift.max(i, 0), sorted.count - 1)]
    }
}

/// A benchmark that cannot run, with the fix; `code` is the exit status.
public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public var code: Int32
    /// An error with its message; `code` 2 is bad usage.
    public init(_ d: String, code: Int32 = 1) {
        description = d
        self.code = code
    }
}
