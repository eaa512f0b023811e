/// `Codable` over `JSON` values, so that the protocol's types say once how they look on
/// the wire. Integers must be written as integers, and a value that does not fit its
/// type is an error that names the field.
public enum JSONCoding {
    /// The `JSON` value of `value`, through its `Encodable` conformance.
    public static func encode<T: Encodable>(_ value: T) throws -> JSON {
        let root = Slot()
        try root.store(value, path: [])
        return root.json
    }

    /// A `T` from a `JSON` value; a failure names the field (see `describe`).
    public static func decode<T: Decodable>(_ type: T.Type, from json: JSON) throws -> T {
        try ValueDecoder(json, path: []).unbox(type)
    }

    /// One line for a decoding error, naming the field: `claim.bytes: expected an integer, found "x"`.
    public static func describe(_ error: any Error) -> String {
        if let e = error as? JSONSyntaxError { return "not JSON \(e)" }
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "" : "\(p): "
        }
        switch e {
        case .keyNotFound(let k, let c): return "\(path(c))missing field \"\(k.stringValue)\""
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            return "\(path(c))\(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// A position in the path of a value: a key or an array index.
struct PathKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = "\(intValue)"
        self.intValue = intValue
    }
}

extension JSON {
    /// What a value is, for an error message.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number(let n): "the number \(n)"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

// MARK: - Encoding

/// The value being built at one place in the tree; containers hand out child slots.
final class Slot {
    enum Content {
        case value(JSON)
        case object([String: Slot])
        case array([Slot])
    }

    var content: Content = .object([:])

    var json: JSON {
        switch content {
        case .value(let v): v
        case .object(let m): .object(m.mapValues(\.json))
        case .array(let a): .array(a.map(\.json))
        }
    }

    func child(_ key: String) -> Slot {
        let s = Slot()
        if case .object(var m) = content {
            m[key] = s
            content = .object(m)
        } else {
            content = .object([key: s])
        }
        return s
    }

    func appended() -> Slot {
        let s = Slot()
        if case .array(var a) = content {
            a.append(s)
            content = .array(a)
        } else {
            content = .array([s])
        }
        return s
    }

    func store<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
        switch value {
        case let v as String: content = .value(.string(v))
        case let v as Bool: content = .value(.bool(v))
        case let v as Double: content = .value(try Slot.number(v, path))
        case let v as Float: content = .value(try Slot.number(Double(v), path))
        case let v as any BinaryInteger: content = .value(.number("\(v)"))
        default: try value.encode(to: ValueEncoder(self, path: path))
        }
    }

    static func number(_ v: Double, _ path: [any CodingKey]) throws -> JSON {
        guard v.isFinite else {
            throw EncodingError.invalidValue(v, .init(codingPath: path, debugDescription: "\(v) has no JSON form"))
        }
        return .number(v == v.rounded() && abs(v) < 1e15 ? "\(Int64(v))" : "\(v)")
    }
}

struct ValueEncoder: Encoder {
    let slot: Slot
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ slot: Slot, path: [any CodingKey]) {
        self.slot = slot
        codingPath = path
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = slot.content {} else { slot.content = .object([:]) }
        return KeyedEncodingContainer(KeyedEncoder<Key>(slot: slot, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = slot.content {} else { slot.content = .array([]) }
        return UnkeyedEncoder(slot: slot, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleEncoder(slot: slot, codingPath: codingPath) }
}

struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let slot: Slot
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { slot.child(key.stringValue).content = .value(.null) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try slot.child(key.stringValue).store(value, path: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        ValueEncoder(slot.child(key.stringValue), path: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        ValueEncoder(slot.child(key.stringValue), path: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { ValueEncoder(slot.child("super"), path: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { ValueEncoder(slot.child(key.stringValue), path: codingPath + [key]) }
}

struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let slot: Slot
    let codingPath: [any CodingKey]

    var count: Int {
        if case .array(let a) = slot.content { return a.count }
        return 0
    }

    private var next: [any CodingKey] { codingPath + [PathKey(intValue: count)] }

    mutating func encodeNil() throws { slot.appended().content = .value(.null) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = next
        try slot.appended().store(value, path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = next
        return ValueEncoder(slot.appended(), path: path).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = next
        return ValueEncoder(slot.appended(), path: path).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let path = next
        return ValueEncoder(slot.appended(), path: path)
    }
}

struct SingleEncoder: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { slot.content = .value(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try slot.store(value, path: codingPath) }
}

// MARK: - Decoding

struct ValueDecoder: Decoder {
    let value: JSON
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSON, path: [any CodingKey]) {
        self.value = value
        codingPath = path
    }

    func mismatch(_ expected: String) -> DecodingError {
        .typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "expected \(expected), found \(value.kind)"))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let m) = value else { throw mismatch("an object") }
        return KeyedDecodingContainer(KeyedDecoder<Key>(members: m, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let a) = value else { throw mismatch("an array") }
        return UnkeyedDecoder(items: a, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(decoder: self) }

    /// The value as `type`; null is an error, as a missing value is.
    func present<T: Decodable>(_ type: T.Type) throws -> T {
        if value == .null {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected a value, found null"))
        }
        return try unbox(type)
    }

    func unbox<T: Decodable>(_ type: T.Type) throws -> T {
        switch type {
        case is String.Type:
            guard case .string(let s) = value else { throw mismatch("a string") }
            return s as! T
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch("a boolean") }
            return b as! T
        case is Double.Type: return try double() as! T
        case is Float.Type: return Float(try double()) as! T
        case let t as any FixedWidthInteger.Type: return try integer(t) as! T
        default: return try T(from: self)
        }
    }

    func double() throws -> Double {
        guard case .number(let n) = value, let d = Double(n), d.isFinite else { throw mismatch("a number") }
        return d
    }

    func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        guard case .number(let n) = value else { throw mismatch("an integer") }
        guard let v = I(n) else {
            let integral = !n.contains(".") && !n.contains("e") && !n.contains("E")
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath,
                debugDescription: integral ? "\(n) is out of range for \(I.self)" : "expected an integer, found \(n)"))
        }
        return v
    }
}

struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [String: JSON]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { members.keys.sorted().compactMap(Key.init(stringValue:)) }

    func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }

    func member(_ key: Key) throws -> ValueDecoder {
        guard let v = members[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing field \"\(key.stringValue)\""))
        }
        return ValueDecoder(v, path: codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key).value == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try member(key).present(type)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try member(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try member(key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { ValueDecoder(members["super"] ?? .null, path: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try member(key) }
}

struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSON]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [JSON], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> ValueDecoder {
        let path = codingPath + [PathKey(intValue: currentIndex)]
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path, debugDescription: "the array ends early"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(items[currentIndex], path: path)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next().present(type)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

struct SingleDecoder: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.value == .null }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decoder.present(type)
    }
}
