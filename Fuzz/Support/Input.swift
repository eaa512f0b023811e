// Shared by every harness: the fuzzer's bytes as the text a parser is given, and the
// checks every parser owes its users whatever the input.

/// The input as the parsers get it from a file or a socket: bytes decoded as UTF-8,
/// invalid sequences replaced, as `String(decoding:)` does.
func inputText(_ data: UnsafePointer<UInt8>, _ size: Int) -> String {
    String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
}

/// The input cut at NUL bytes into at most `parts` pieces (the last keeps the rest),
/// for harnesses whose program reads several inputs.
func inputParts(_ data: UnsafePointer<UInt8>, _ size: Int, _ parts: Int) -> [String] {
    UnsafeBufferPointer(start: data, count: size)
        .split(separator: 0, maxSplits: parts - 1, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
}

/// An error a user reads: one line, not empty.
func checkMessage(_ message: String, from what: String) {
    if message.isEmpty || message.contains(where: \.isNewline) {
        fatalError("\(what) gave an error that is not one line: \(message.debugDescription)")
    }
}
