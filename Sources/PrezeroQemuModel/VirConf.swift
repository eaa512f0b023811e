import PrezeroCore
import PrezeroProtocol

/// libvirt's configuration grammar (`src/util/virconf.c`), as the qemu driver reads
/// qemu.conf: statements `name = value` separated by newlines or `;`, `#` comments,
/// values that are strings (`'…'`, `"…"` or `"""…"""`), integers, or lists `[v, …]`
/// that may span lines. Written from the grammar, not from libvirt's code.
public enum VirConf {
    public indirect enum Value: Equatable, Sendable {
        case string(String)
        case integer(Int64)
        case list([Value])
    }

    /// Why qemu.conf does not read, with its line number.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var line: Int
        @OneLine public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    /// Every setting in file order; a name may repeat.
    public static func parse(_ text: String) throws(ParseError) -> [(name: String, value: Value)] {
        var p = Parser(bytes: Array(text.utf8))
        return try p.statements()
    }

    /// The value libvirt uses for `name`: virConfGetValue walks the entries from the
    /// top and returns the first match, so of repeated keys the first one wins.
    public static func lookup(_ entries: [(name: String, value: Value)], _ name: String) -> Value? {
        entries.first { $0.name == name }?.value
    }

    struct Parser {
        let bytes: [UInt8]
        var at = 0
        var line = 1
        /// Lists open around the value being read. libvirt recurses without a bound;
        /// here a list nested past `maxDepth` is an error, not a stack overflow in the
        /// daemon (found by `make fuzz`). qemu.conf's lists hold strings.
        var depth = 0
        static let maxDepth = 32

        var cur: UInt8? { at < bytes.count ? bytes[at] : nil }
        func fail(_ m: String) -> ParseError { ParseError(line: line, message: m) }
        static func isBlank(_ c: UInt8?) -> Bool { c == 0x20 || c == 0x09 }
        static func isEOL(_ c: UInt8?) -> Bool { c == 0x0A || c == 0x0D }

        mutating func skipBlanks() { while Self.isBlank(cur) { at += 1 } }
        mutating func skipBlanksAndEOL() {
            while Self.isBlank(cur) || Self.isEOL(cur) {
                if cur == 0x0A { line += 1 }
                at += 1
            }
        }
        mutating func skipToEOL() { while let c = cur, !Self.isEOL(c) { at += 1 } }

        // virConfParse: statement, separator, until the end.
        mutating func statements() throws(ParseError) -> [(name: String, value: Value)] {
            var out: [(name: String, value: Value)] = []
            while at < bytes.count {
                skipBlanksAndEOL()
                guard let c = cur else { break }
                if c == UInt8(ascii: "#") {
                    skipToEOL()
                } else {
                    let name = try self.name()
                    skipBlanks()
                    guard cur == UInt8(ascii: "=") else { throw fail("expecting '=' after \(name)") }
                    at += 1
                    let v = try value()
                    skipBlanks()
                    if cur == UInt8(ascii: "#") { skipToEOL() }
                    out.append((name, v))
                }
                // virConfParseSeparator: end, a newline or a ';'.
                skipBlanks()
                guard let s = cur else { break }
                if Self.isEOL(s) { skipBlanksAndEOL() }
                else if s == UInt8(ascii: ";") { at += 1; skipBlanksAndEOL() }
                else { throw fail("expecting a newline or ';' after a setting") }
            }
            return out
        }

        // virConfParseName: a letter, then letters, digits and '_'.
        mutating func name() throws(ParseError) -> String {
            skipBlanks()
            guard let c = cur, c.isASCIILetter else { throw fail("expecting a setting name") }
            let start = at
            while let c = cur, c.isASCIILetter || c.isASCIIDigit || c == UInt8(ascii: "_") { at += 1 }
            return String(decoding: bytes[start..<at], as: UTF8.self)
        }

        // virConfParseValue.
        mutating func value() throws(ParseError) -> Value {
            skipBlanks()
            guard let c = cur else { throw fail("expecting a value") }
            switch c {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "["):
                guard depth < Self.maxDepth else { throw fail("lists are nested deeper than \(Self.maxDepth)") }
                depth += 1
                defer { depth -= 1 }
                at += 1
                skipBlanksAndEOL()
                var items: [Value] = []
                if cur != nil && cur != UInt8(ascii: "]") {
                    items.append(try value())
                    skipBlanksAndEOL()
                }
                while let c = cur, c != UInt8(ascii: "]") {
                    guard c == UInt8(ascii: ",") else { throw fail("expecting ',' or ']' in a list") }
                    at += 1
                    skipBlanksAndEOL()
                    if cur == UInt8(ascii: "]") { break }
                    items.append(try value())
                    skipBlanksAndEOL()
                }
                guard cur == UInt8(ascii: "]") else { throw fail("list is not closed with ']'") }
                at += 1
                return .list(items)
            case UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .integer(try integer())
            default:
                throw fail("expecting a value (a quoted string, a number or a list)")
            }
        }

        // virConfParseString: '…' and "…" end at the line's end; """…""" may span lines.
        mutating func string() throws(ParseError) -> String {
            let q = bytes[at]
            if q == UInt8(ascii: "\""), at + 6 < bytes.count, bytes[at + 1] == q, bytes[at + 2] == q {
                at += 3
                let start = at
                while at + 2 < bytes.count, !(bytes[at] == q && bytes[at + 1] == q && bytes[at + 2] == q) {
                    if bytes[at] == 0x0A { line += 1 }
                    at += 1
                }
                guard at + 2 < bytes.count else { throw fail("unterminated string") }
                let s = String(decoding: bytes[start..<at], as: UTF8.self)
                at += 3
                return s
            }
            at += 1
            let start = at
            while let c = cur, c != q, !Self.isEOL(c) { at += 1 }
            guard cur == q else { throw fail("unterminated string") }
            let s = String(decoding: bytes[start..<at], as: UTF8.self)
            at += 1
            return s
        }

        mutating func integer() throws(ParseError) -> Int64 {
            var neg = false
            if cur == UInt8(ascii: "-") { neg = true; at += 1 } else if cur == UInt8(ascii: "+") { at += 1 }
            guard let c = cur, c.isASCIIDigit else { throw fail("unterminated number") }
            var v: Int64 = 0
            while let c = cur, c.isASCIIDigit {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int64(c - UInt8(ascii: "0")))
                guard !o1, !o2 else { throw fail("number is too large") }
                v = s
                at += 1
            }
            return neg ? -v : v
        }
    }
}

extension UInt8 {
    var isASCIILetter: Bool { (0x41...0x5A).contains(self) || (0x61...0x7A).contains(self) }
    var isASCIIDigit: Bool { (0x30...0x39).contains(self) }
}

/// The qemu.conf settings prezero needs, read as libvirt's qemu driver reads them.
public struct QemuConf: Equatable, Sendable {
    public var memoryBackingDir: String?
    public var user: String?
    public var group: String?
    /// `hugetlbfs_mount`: a string or a list of strings.
    public var hugetlbfsMounts: [String]?

    /// The settings given; nil is one qemu.conf leaves unset.
    public init(memoryBackingDir: String? = nil, user: String? = nil, group: String? = nil, hugetlbfsMounts: [String]? = nil) {
        self.memoryBackingDir = memoryBackingDir
        self.user = user
        self.group = group
        self.hugetlbfsMounts = hugetlbfsMounts
    }

    /// Why libvirtd would refuse the qemu.conf, in one line.
    public struct ConfError: Error, Equatable, CustomStringConvertible {
        @OneLine public var description: String
    }

    /// A qemu.conf libvirtd would refuse (a syntax error, or a setting of the wrong type) throws.
    public static func parse(_ text: String) throws(ConfError) -> QemuConf {
        let entries: [(name: String, value: VirConf.Value)]
        do {
            entries = try VirConf.parse(text)
        } catch {
            throw ConfError(description: "qemu.conf \(error.description)")
        }
        func string(_ key: String) throws(ConfError) -> String? {
            switch VirConf.lookup(entries, key) {
            case nil: return nil
            case .string(let s)?: return s
            default: throw ConfError(description: "qemu.conf: \(key) must be a string")
            }
        }
        var c = QemuConf(memoryBackingDir: try string("memory_backing_dir"), user: try string("user"), group: try string("group"))
        switch VirConf.lookup(entries, "hugetlbfs_mount") {
        case nil: break
        case .string(let s)?: c.hugetlbfsMounts = [s]
        case .list(let items)?:
            c.hugetlbfsMounts = try items.map { v throws(ConfError) in
                guard case .string(let s) = v else { throw ConfError(description: "qemu.conf: hugetlbfs_mount must list strings") }
                return s
            }
        case .integer?: throw ConfError(description: "qemu.conf: hugetlbfs_mount must be a string or a list of strings")
        }
        return c
    }
}
