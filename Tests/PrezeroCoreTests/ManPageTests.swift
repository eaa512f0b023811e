import Foundation
import PrezeroProtocol
import Testing
@testable import PrezeroCore

/// The man pages written by hand (docs/man) against the keys the code reads: a key added to
/// hook.conf or to prezerod.yaml without its entry fails here. The other pages are generated
/// from the commands' own help (`make man`).
@Suite("man pages: the hand-written ones name every key")
struct ManPageTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/man").path

    /// The keys a page describes: each `.It Cm key` (several on one line for keys that share an entry).
    static func entries(_ page: String) throws -> Set<String> {
        let text = try String(contentsOfFile: dir + "/" + page, encoding: .utf8)
        return Set(text.split(separator: "\n").filter { $0.hasPrefix(".It Cm ") }.flatMap { line in
            line.dropFirst(4).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "Cm ", with: "") }
        })
    }

    @Test("prezero-hook(8) has an entry for every hook.conf key, and none for a key the hook does not read")
    func hookPage() throws {
        let listed = try Self.entries("prezero-hook.8").filter { !$0.contains(" ") }
        #expect(listed == Set(HookSettings.keys), "page: \(listed.sorted()), hook.conf: \(HookSettings.keys)")
    }

    @Test("prezerod.yaml(5) has an entry for every key prezerod reads, and none for a key it refuses")
    func configPage() throws {
        let listed = try Self.entries("prezerod.yaml.5")
        let keys = Set(Config.CodingKeys.allCases.map(\.stringValue))
        #expect(listed == keys, "missing: \(keys.subtracting(listed).sorted()); unknown: \(listed.subtracting(keys).sorted())")
    }
}
