/// The string helper the parsers here need, on the standard library alone
/// (Foundation's would make every binary that links the pool link Foundation).
public enum Text {
    /// `s` without leading and trailing whitespace and newlines.
    public static func trimmed<S: StringProtocol>(_ s: S) -> String {
        String(s.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
