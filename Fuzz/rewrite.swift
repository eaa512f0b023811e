// libFuzzer harness: `prezero libvirt enable`'s rewrite as a round trip (scripts/fuzz.sh
// links PrezeroCore). A rewritten domain parses, is eligible, needs no second rewrite,
// and differs from the original only in <memoryBacking> and the cells' memAccess: the
// two documents are compared as trees, read by libxml2 rather than by the rewrite's
// text scanner.
import PrezeroCore
import PrezeroLibvirtModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let xml = inputText(data, size)
    let result: DomainRewrite.Result
    do {
        result = try DomainRewrite.enable(xml)
    } catch {
        checkMessage(error.description, from: "DomainRewrite.enable")
        return 0
    }
    guard !result.changes.isEmpty else {
        guard result.xml == xml else { fatalError("no change was reported, yet the XML differs") }
        return 0
    }
    let domain: DomainMemory
    do {
        domain = try DomainXML.parse(result.xml)
    } catch {
        fatalError("the rewritten XML does not parse: \(error)")
    }
    guard domain.source == .file, domain.access == .shared, domain.hugepages.isEmpty,
          !domain.cells.contains(where: { $0.access == .private }) else {
        fatalError("the rewritten domain is not eligible: \(domain)")
    }
    guard (try? DomainRewrite.enable(result.xml))?.changes == [] else {
        fatalError("a rewritten domain is rewritten again")
    }
    guard let before = withoutBackingAndMemAccess(xml), let after = withoutBackingAndMemAccess(result.xml) else {
        fatalError("libxml2 reads one of the two documents but not the other")
    }
    guard before == after else {
        fatalError("the rewrite changed more than <memoryBacking> and memAccess:\n\(before)\n\(after)")
    }
    return 0
}

/// The document's root with the domain's <memoryBacking> elements, its cells' memAccess
/// and blank text between elements removed; nil when libxml2 cannot read it.
private func withoutBackingAndMemAccess(_ xml: String) -> XMLTree.Element? {
    func strip(_ e: XMLTree.Element, path: [String]) -> XMLTree.Element {
        var e = e
        if path == ["domain", "cpu", "numa", "cell"] { e.attributes["memAccess"] = nil }
        e.nodes = e.nodes.compactMap { node in
            switch node {
            case .element(let c) where path == ["domain"] && c.name == "memoryBacking": nil
            case .element(let c): .element(strip(c, path: path + [c.name]))
            case .text(let t) where t.allSatisfy(\.isWhitespace): nil
            default: node
            }
        }
        return e
    }
    return (try? XMLTree.parse(xml)).map { strip($0.root, path: [$0.root.name]) }
}
