/// Sizes as people write them: `8G`, `512M`, `2MiB`, `1073741824`.
public enum ByteSize {
    /// Parses a size with an optional binary suffix (K, M, G, T; `iB`/`B` accepted).
    public static func parse(_ text: String) -> UInt64? {
        var s = trimmed(text).uppercased()
        for suffix in ["IB", "B"] where s.hasSuffix(suffix) && s.count > suffix.count {
            s.removeLast(suffix.count)
            break
        }
        let shifts: [Character: UInt64] = ["K": 10, "M": 20, "G": 30, "T": 40]
        var shift: UInt64 = 0
        if let last = s.last, let sh = shifts[last] {
            shift = sh
            s.removeLast()
        }
        guard !s.isEmpty, s.allSatisfy(\.isNumber), let n = UInt64(s) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : v
    }

    /// `8 GiB`, `2 MiB`, `1.5 GiB`, `0 B`.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024, i < units.count - 1 {
            v /= 1024
            i += 1
        }
        if i == 0 || v == v.rounded() { return "\(Int(v)) \(units[i])" }
        return "\((v * 10).rounded() / 10) \(units[i])"
    }

    /// Rounds up to a multiple of `unit`.
    public static func roundUp(_ bytes: UInt64, to unit: UInt64) -> UInt64 {
        (bytes + unit - 1) / unit * unit
    }
}

/// A size given either in bytes or as a share of a node's huge pages (`50%`).
public enum SizeSpec: Equatable, Sendable, Codable, CustomStringConvertible {
    case bytes(UInt64)
    case percent(Double)

    /// Parses `50%` (0 to 100) or a size `ByteSize.parse` reads; nil for anything else.
    public init?(_ text: String) {
        let t = trimmed(text)
        if t.hasSuffix("%") {
            guard let p = Double(t.dropLast()), p >= 0, p <= 100 else { return nil }
            self = .percent(p)
        } else if let b = ByteSize.parse(t) {
            self = .bytes(b)
        } else {
            return nil
        }
    }

    /// Bytes this spec stands for on a node whose huge pages total `totalBytes`.
    public func resolve(totalBytes: UInt64) -> UInt64 {
        switch self {
        case .bytes(let b): return b
        case .percent(let p): return UInt64((Double(totalBytes) * p / 100).rounded(.down))
        }
    }

    public var description: String {
        switch self {
        case .bytes(let b): return "\(b)"
        case .percent(let p): return p == p.rounded() ? "\(Int(p))%" : "\(p)%"
        }
    }

    /// A bare integer is bytes; a string is read as `init?(_:)` reads it, so `8G` and `50%` work too.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt64.self) {
            self = .bytes(n)
            return
        }
        let s = try c.decode(String.self)
        guard let v = SizeSpec(s) else {
            throw DecodingError.dataCorruptedError(
                in: c, debugDescription: "'\(s)' is not a size (use e.g. 8G, 512M, 50%)")
        }
        self = v
    }

    /// Written as `description`, always a string: bytes as digits, a share with its `%`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// `text` without the spaces and tabs around it.
func trimmed(_ text: String) -> String {
    let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    return String(text.drop(while: blank).reversed().drop(while: blank).reversed())
}

/// `text` with every control or line-breaking character as `?`, so that it fits in one log line.
func printable(_ text: String) -> String {
    String(String.UnicodeScalarView(text.unicodeScalars.map { c in
        [.control, .lineSeparator, .paragraphSeparator].contains(c.properties.generalCategory) ? "?" : c
    }))
}
