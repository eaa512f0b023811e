/// An error's text on one line and of bounded length, whatever outside input it quotes:
/// control characters and line separators are escaped, and past `limit` characters the
/// text is cut with "…". Errors of the parsers of outside input keep their text in one,
/// so a log line or a one-line CLI error stays one line.
@propertyWrapper
public struct OneLine: Equatable, Sendable {
    public static let limit = 400
    private var text: String

    /// Cleans `wrappedValue` as every later assignment is cleaned.
    public init(wrappedValue: String) { text = Self.clean(wrappedValue) }

    public var wrappedValue: String {
        get { text }
        set { text = Self.clean(newValue) }
    }

    static func clean(_ s: String) -> String {
        var out = ""
        var count = 0
        for c in s.unicodeScalars {
            guard count < limit else { return out + "…" }
            switch c {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where c.properties.generalCategory == .control || c.properties.generalCategory == .lineSeparator
                || c.properties.generalCategory == .paragraphSeparator:
                out += "\\u{\(String(c.value, radix: 16))}"
            default: out.unicodeScalars.append(c)
            }
            count += 1
        }
        return out
    }
}
