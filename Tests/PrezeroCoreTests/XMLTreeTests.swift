import Testing
@testable import PrezeroCore
@testable import PrezeroLibvirtModel

@Suite("XMLTree: one strict SAX pass to values")
struct XMLTreeTests {
    @Test func elementsAttributesAndPathsInDocumentOrder() throws {
        let tree = try XMLTree.parse("""
            <domain type='kvm'><cpu><numa><cell id='0'/><cell id='1'/></numa></cpu><name>a</name></domain>
            """)
        #expect(tree.root.name == "domain")
        #expect(tree.root.attributes == ["type": "kvm"])
        #expect(tree.root.elements("cpu/numa/cell").map { $0.attributes["id"] } == ["0", "1"])
        #expect(tree.root.first("name")?.stringValue == "a")
        #expect(tree.root.elements("cpu/cell").isEmpty, "a path names every level")
    }

    /// libxml2 hands text over in pieces at entities; XPath's string value is one
    /// text, with CDATA and without comments.
    @Test func textRunsJoinAndCommentsAreNotText() throws {
        let root = try XMLTree.parse("<n>a&amp;b<!-- c --><![CDATA[<d>]]><i>e</i></n>").root
        #expect(root.stringValue == "a&b<d>e")
        #expect(root.nodes.first == .text("a&b"))
        #expect(root.nodes.contains(.comment(" c ")))
    }

    @Test(arguments: [
        ("empty", ""),
        ("NUL", "<a>\u{0}</a>"),
        ("unclosed", "<domain><name>a</name>"),
        ("two roots", "<a/><b/>"),
        ("second domain", "<domain><name>a</name></domain>\n<domain><name>b</name></domain>"),
        ("text after the root", "<a/> trailing"),
        ("mismatched", "<a><b></a></b>"),
        ("text only", "just words"),
        ("undefined entity", "<a>&nope;</a>"),
    ])
    func notWellFormedThrowsOneLine(label: String, text: String) {
        #expect(throws: XMLTree.ParseError.self, "\(label)") { try XMLTree.parse(text) }
        do {
            _ = try XMLTree.parse(text)
        } catch {
            #expect(!error.description.isEmpty && !error.description.contains("\n"), "\(label): \(error)")
        }
    }
}

@Suite("OneLine: an error quoting outside input stays one bounded line")
struct OneLineTests {
    @Test func controlCharactersAndSeparatorsAreEscaped() {
        #expect(OneLine.clean("a\nb\r\tc\u{0}\u{1b}d\u{2028}e\u{85}") == #"a\nb\r\tc\u{0}\u{1b}d\u{2028}e\u{85}"#)
        #expect(OneLine.clean("plain 'text' ünïcode") == "plain 'text' ünïcode")
    }

    @Test func longTextIsCut() {
        let cut = OneLine.clean(String(repeating: "x", count: 10_000))
        #expect(cut == String(repeating: "x", count: OneLine.limit) + "…")
    }

    /// Found by `make fuzz` (Fuzz/corpus/rewrite/newline-in-memory-value): the value
    /// quoted in the error carried the input's newline.
    @Test func aDomainErrorQuotingANewlineIsOneLine() {
        let xml = syntheticDomain().replacingOccurrences(of: "<memory unit='KiB'>", with: "<memory unit='KiB'>12\n34")
        let err = domainXMLError(xml)
        #expect(err?.description.contains("is not a number") == true, "\(String(describing: err))")
        #expect(err?.description.contains("\n") == false)
    }
}
