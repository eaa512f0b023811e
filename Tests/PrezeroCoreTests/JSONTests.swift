import Foundation
import PrezeroCore
import PrezeroProtocol
import Testing

private func parse(_ s: String) -> JSON? { try? JSON(parsing: s) }

private struct Inner: Codable { var bytes: UInt64 }
private struct Outer: Codable { var claim: Inner; var nodes: [Int] }

@Suite("JSON: the protocol's own reader and writer")
struct JSONTests {
    @Test func valuesRoundTrip() throws {
        let text = #"{"a":[1,-0.5,2e10,true,false,null,"x\"y\\z\n\u0001é😀"],"b":{},"c":[]}"#
        let v = try JSON(parsing: text)
        #expect(try JSON(parsing: v.text) == v)
        #expect(try JSON(parsing: v.prettyText) == v)
        #expect(v.text == #"{"a":[1,-0.5,2e10,true,false,null,"x\"y\\z\n\u0001é😀"],"b":{},"c":[]}"#)
    }

    @Test func sixtyFourBitIntegersSurviveExactly() throws {
        let v = try JSONCoding.decode([UInt64].self, from: JSON(parsing: "[18446744073709551615, 9007199254740993]"))
        #expect(v == [UInt64.max, 9_007_199_254_740_993])
        #expect(try JSONCoding.encode(v).text == "[18446744073709551615,9007199254740993]")
    }

    @Test(arguments: [
        "", " ", "{", "}", "[", "[1,]", "{\"a\":1,}", "{\"a\"}", "{a:1}", "'x'", "01", "1.", ".5", "+1", "-", "1e", "1e+",
        "tru", "nul", "[1 2]", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\u{01}b\"",
        "\"open", "1 2", "{} {}", "\u{feff}{}", "NaN", "Infinity", "[\"\\",
    ])
    func malformedTextIsRefused(text: String) {
        #expect(parse(text) == nil, "\(text.debugDescription) was accepted")
    }

    @Test func invalidUTF8IsRefused() {
        #expect((try? JSON(parsing: [0x22, 0xff, 0x22])) == nil)
        #expect((try? JSON(parsing: [0x22, 0xc3, 0x22])) == nil)
    }

    @Test func duplicateKeysAreRefused() throws {
        // Two readers that pick different duplicates would disagree about what a request asks.
        let e = try #require(throws: JSONSyntaxError.self) { try JSON(parsing: #"{"op":"status","op":"drain"}"#) }
        #expect(e.message.contains("duplicate key \"op\""))
    }

    @Test func nestingIsBounded() {
        let ok = String(repeating: "[", count: JSON.maxDepth) + String(repeating: "]", count: JSON.maxDepth)
        let deep = String(repeating: "[", count: JSON.maxDepth + 1) + String(repeating: "]", count: JSON.maxDepth + 1)
        #expect(parse(ok) != nil)
        #expect(parse(deep) == nil)
        // A million brackets is an error, not a stack overflow.
        #expect(parse(String(repeating: "[", count: 1_000_000)) == nil)
    }

    @Test func decodingErrorsNameTheField() throws {
        func why(_ s: String) -> String {
            do {
                let json = try JSON(parsing: s)
                _ = try JSONCoding.decode(Outer.self, from: json)
                return "decoded"
            } catch {
                return JSONCoding.describe(error)
            }
        }
        #expect(why(#"{"claim":{"bytes":"x"},"nodes":[]}"#) == "claim.bytes: expected an integer, found a string")
        #expect(why(#"{"claim":{"bytes":-1},"nodes":[]}"#) == "claim.bytes: -1 is out of range for UInt64")
        #expect(why(#"{"claim":{"bytes":1.5},"nodes":[]}"#) == "claim.bytes: expected an integer, found 1.5")
        #expect(why(#"{"claim":{},"nodes":[]}"#) == "claim: missing field \"bytes\"")
        #expect(why(#"{"claim":{"bytes":1},"nodes":[0,"1"]}"#) == "nodes.1: expected an integer, found a string")
        #expect(why(#"{"claim":{"bytes":null},"nodes":[]}"#) == "claim.bytes: expected a value, found null")
        #expect(why(#"{"claim":[],"nodes":[]}"#) == "claim: expected an object, found an array")
    }

    @Test func nonFiniteNumbersDoNotEncode() {
        #expect(throws: EncodingError.self) { try JSONCoding.encode([Double.nan]) }
        #expect(throws: EncodingError.self) { try JSONCoding.encode([Double.infinity]) }
    }

    /// Foundation's reader is an independent implementation of the same grammar: on a
    /// corpus of valid, mutated and random texts, ours accepts what it accepts and reads
    /// the same strings. Where they differ, one of the two departs from RFC 8259 on
    /// purpose: we refuse duplicate keys, and Foundation accepts a trailing comma and
    /// refuses a number beyond a Double's range (the RFC allows both; we keep the text).
    @Test func agreesWithFoundationOnAGeneratedCorpus() throws {
        var rng = SeededRandom(11)
        let seeds = [
            #"{"v":1,"op":"claim","claim":{"bytes":4294967296,"dest":"/d","nodes":[0,1]}}"#,
            #"[1,-2.5e-3,"a\u00e9\ud83d\ude00\n",true,false,null,{"k":[]}]"#,
            #"{"s":"\"\\\/\b\f\n\r\t","e":0E+1,"z":-0}"#,
        ]
        let alphabet = Array(#"{}[]":,-+.0123456789eEtrufalsn \"#.utf8) + [0x5c, 0x75, 0x0a, 0x01, 0xc3, 0xa9, 0xff]
        var agreed = 0
        for n in 0..<20_000 {
            var bytes = Array(seeds[n % seeds.count].utf8)
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = Int(rng.next() % UInt64(bytes.count + 1))
                switch rng.next() % 3 {
                case 0 where at < bytes.count: bytes.remove(at: at)
                case 1: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                default: if at < bytes.count { bytes[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                }
            }
            let ours = try? JSON(parsing: bytes)
            let theirs = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
            if ours == nil, theirs != nil, knownDeparture(bytes) { continue }
            if let ours, theirs == nil, hasHugeNumber(ours) { continue }
            #expect((ours != nil) == (theirs != nil),
                    "\(String(decoding: bytes, as: UTF8.self).debugDescription): ours \(ours != nil), Foundation \(theirs != nil)")
            if let ours, let theirs { #expect(sameStrings(ours, theirs), "\(String(decoding: bytes, as: UTF8.self).debugDescription)") }
            agreed += 1
        }
        #expect(agreed > 19_000)
    }

    /// A duplicate key, or a comma just before `]` or `}`.
    func knownDeparture(_ bytes: [UInt8]) -> Bool {
        do {
            _ = try JSON(parsing: bytes)
            return false
        } catch {
            if error.message.hasPrefix("duplicate key") { return true }
            guard error.offset < bytes.count, bytes[error.offset] == UInt8(ascii: "]") || bytes[error.offset] == UInt8(ascii: "}")
            else { return false }
            return bytes[..<error.offset].last { $0 != 0x20 && $0 != 0x0a } == UInt8(ascii: ",")
        }
    }

    func hasHugeNumber(_ v: JSON) -> Bool {
        switch v {
        case .number(let n): !(Double(n)?.isFinite ?? false)
        case .array(let a): a.contains(where: hasHugeNumber)
        case .object(let m): m.values.contains(where: hasHugeNumber)
        default: false
        }
    }

    func sameStrings(_ ours: JSON, _ theirs: Any) -> Bool {
        switch ours {
        case .string(let s): return (theirs as? String) == s
        case .array(let a):
            guard let t = theirs as? [Any], t.count == a.count else { return false }
            return zip(a, t).allSatisfy { sameStrings($0, $1) }
        case .object(let m):
            guard let t = theirs as? [String: Any], t.count == m.count else { return false }
            return m.allSatisfy { k, v in t[k].map { sameStrings(v, $0) } ?? false }
        case .number(let n): return (theirs as? NSNumber).map { abs($0.doubleValue - Double(n)!) <= abs(Double(n)!) * 1e-12 } ?? false
        case .bool, .null: return true
        }
    }
}
