import Testing
@testable import PrezeroCore

private let uuidKey = "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0"

@Suite("FileState")
struct PoolStateTests {
    @Test func directoryNames() {
        #expect(FileState.allCases.map(\.rawValue) == ["filling", "clean", "leased", "quarantine"])
    }
}

@Suite("PoolFileName")
struct PoolFileNameTests {
    @Test func parsesItsFields() throws {
        let n = try #require(PoolFileName("n1-1073741824-42"))
        #expect(n.node == 1)
        #expect(n.bytes == 1 << 30)
        #expect(n.seq == 42)
    }

    @Test(arguments: [
        PoolFileName(node: 0, bytes: 0, seq: 0),
        PoolFileName(node: 0, bytes: 2 << 20, seq: 1),
        PoolFileName(node: 3, bytes: 1 << 30, seq: 123_456_789),
        PoolFileName(node: 4095, bytes: UInt64.max, seq: UInt64.max),
    ])
    func roundTrips(name: PoolFileName) {
        #expect(PoolFileName(name.description) == name)
    }

    @Test func description() {
        #expect(PoolFileName(node: 2, bytes: 4096, seq: 7).description == "n2-4096-7")
    }

    @Test(arguments: [
        "", "n", "n0", "n0-1", "n0-1-2-3", "x0-1-2", "N0-1-2", "0-1-2", "n-1-2", "nx-1-2",
        "n-1-1-2", "n4096-1-2", "n99999999999999999999-1-2", "n0--2", "n0-1-", "-1-2",
        "n0-a-2", "n0-1-b", "n0-1-2 ", " n0-1-2", "n0-1.5-2", "n0-18446744073709551616-1", "n0-1-18446744073709551616",
        "n0-1-2~", "k~n0-1-2", "n0-٣-2",
    ])
    func rejects(name: String) {
        #expect(PoolFileName(name) == nil)
    }

    /// A name is the key the pool files are found by: any name that parses must be
    /// the one `description` writes, or the pool looks for a file that is not there.
    @Test(arguments: ["n01-2-3", "n+1-2-3", "n00-2-3", "n0-02-3", "n0-2-03", "n0-+2-3"])
    func rejectsNonCanonicalSpellings(name: String) {
        if let parsed = PoolFileName(name) {
            #expect(parsed.description == name, "'\(name)' parses as \(parsed)")
        }
    }

    @Test func resizedKeepsNodeAndSeq() {
        let n = PoolFileName(node: 2, bytes: 8 << 30, seq: 9)
        let r = n.resized(1 << 30)
        #expect(r == PoolFileName(node: 2, bytes: 1 << 30, seq: 9))
        #expect(r.description == "n2-1073741824-9")
        #expect(n.resized(0).bytes == 0)
    }
}

@Suite("LeaseKey")
struct LeaseKeyTests {
    @Test(arguments: [
        uuidKey, "claim-17", "a", "A:b@c_d-e.f", "vm.ram-node0", "x..y", "host@domain:0",
        String(repeating: "k", count: LeaseKey.maxLength),
    ])
    func accepts(key: String) {
        #expect(LeaseKey.problem(key) == nil)
    }

    @Test(arguments: [
        "../x", "a/b", "", ".hidden", ".", "..", "/abs", "a b", "a~b", "tab\there", "nl\nx", "nul\0x",
        "é", "ключ", "key🙂", "a\\b", "a*b", "$(x)", "a%b",
        String(repeating: "k", count: LeaseKey.maxLength + 1),
    ])
    func rejects(key: String) {
        #expect(LeaseKey.problem(key) != nil)
    }

    @Test func lengthIsCountedInBytes() {
        // 81 two-byte characters: 162 bytes, over the limit although the key is short in characters.
        #expect(LeaseKey.problem(String(repeating: "é", count: 81))?.contains("longer") == true)
    }

    @Test func problemsSayWhatIsWrong() {
        #expect(LeaseKey.problem("")?.contains("empty") == true)
        #expect(LeaseKey.problem(String(repeating: "a", count: 161))?.contains("160") == true)
        #expect(LeaseKey.problem(".x")?.contains("'.'") == true)
        #expect(LeaseKey.problem("a/b")?.contains("a/b") == true)
    }
}

@Suite("LeasedName")
struct LeasedNameTests {
    @Test func parses() throws {
        let l = try #require(LeasedName("\(uuidKey)~n1-1073741824-42"))
        #expect(l.key == uuidKey)
        #expect(l.file == PoolFileName(node: 1, bytes: 1 << 30, seq: 42))
    }

    @Test(arguments: [uuidKey, "claim-1", "a:b@c"])
    func roundTrips(key: String) {
        let l = LeasedName(key: key, file: PoolFileName(node: 0, bytes: 2 << 20, seq: 5))
        #expect(l.description == "\(key)~n0-2097152-5")
        #expect(LeasedName(l.description) == l)
    }

    @Test(arguments: [
        "", "~", "n0-1-2", "~n0-1-2", "key~", "key~junk", "key~n0-1", ".x~n0-1-2", "../x~n0-1-2", "a/b~n0-1-2",
        "a~b~n0-1-2", "key~n0-1-2~", "ключ~n0-1-2",
    ])
    func rejects(name: String) {
        #expect(LeasedName(name) == nil)
    }

    @Test func anInvalidKeyDoesNotParseBack() {
        let l = LeasedName(key: "../x", file: PoolFileName(node: 0, bytes: 1, seq: 1))
        #expect(LeasedName(l.description) == nil)
    }
}
