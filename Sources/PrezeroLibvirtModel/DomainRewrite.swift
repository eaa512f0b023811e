import Foundation
import PrezeroCore

/// `prezero libvirt enable`: a defined domain's XML rewritten to the eligible form
/// (`<source type='file'/>`, `<access mode='shared'/>`, no `<hugepages>`), as text,
/// so that everything else, formatting included, stays byte for byte.
public enum DomainRewrite {
    /// The `<memoryBacking>` children of the eligible form, preallocated: what the demo, the
    /// benches and the tests define a handed-over guest with.
    public static let eligibleBacking = "<source type='file'/><access mode='shared'/><allocation mode='immediate'/>"

    /// The rewritten XML and what changed.
    public struct Result: Equatable, Sendable {
        public var xml: String
        /// What was changed, one line each; empty when the domain was already eligible.
        public var changes: [String]
    }

    /// Why a domain was not rewritten, in one line; nothing was changed.
    public struct RewriteError: Error, Equatable, CustomStringConvertible {
        @OneLine public var description: String
    }

    /// Rewrites `xml` to the eligible form. The input and the result must both parse as a
    /// domain, and the result be eligible; else nothing is changed and it throws.
    public static func enable(_ xml: String) throws(RewriteError) -> Result {
        do {
            _ = try DomainXML.parse(xml)
        } catch {
            throw RewriteError(description: error.description)
        }
        var changes: [String] = []
        var out: String
        if let block = findElement("memoryBacking", in: xml, from: xml.startIndex) {
            let indent = lineIndent(xml, at: block.lowerBound)
            let inner = innerText(String(xml[block]), name: "memoryBacking")
            var kept: [String] = []
            var source: String?, access: String?
            for child in topLevelElements(inner) {
                switch elementName(child) {
                case "hugepages":
                    changes.append("removed \(compact(child)): QEMU would get a directory to create its own file in, and nothing could be handed over")
                case "source": source = child
                case "access": access = child
                default: kept.append(child)
                }
            }
            for (old, want, key, value) in [(source, "<source type='file'/>", "type", "file"), (access, "<access mode='shared'/>", "mode", "shared")] {
                if let old {
                    if attribute(key, of: old) != value { changes.append("\(compact(old)) → \(want)") }
                } else {
                    changes.append("added \(want)")
                }
            }
            // libvirt's order: …, source, access, allocation, discard.
            let split = kept.firstIndex { ["allocation", "discard"].contains(elementName($0)) } ?? kept.count
            let children = kept[..<split] + ["<source type='file'/>", "<access mode='shared'/>"] + kept[split...]
            out = String(xml[..<block.lowerBound]) + format(children, indent: indent) + String(xml[block.upperBound...])
        } else {
            guard let anchor = findElement("currentMemory", in: xml, from: xml.startIndex)
                ?? findElement("memory", in: xml, from: xml.startIndex) else {
                throw RewriteError(description: "the domain XML has no <memory> element to place <memoryBacking> after")
            }
            let indent = lineIndent(xml, at: anchor.lowerBound)
            out = String(xml[..<anchor.upperBound]) + "\n" + indent
                + format(["<source type='file'/>", "<access mode='shared'/>"], indent: indent) + String(xml[anchor.upperBound...])
            changes.append("added <memoryBacking> with <source type='file'/> and <access mode='shared'/>")
        }
        // A cell mapped private would keep its backend out of the hand-over.
        var cursor = out.startIndex
        var cellChanges: [String] = []
        while let cell = findTag("cell", in: out, from: cursor) {
            let tag = String(out[cell])
            let fixed = tag.replacingAll("memAccess='private'", with: "memAccess='shared'")
                .replacingAll("memAccess=\"private\"", with: "memAccess=\"shared\"")
            if fixed != tag {
                cellChanges.append("<cell id='\(attribute("id", of: tag) ?? "?")'> memAccess private → shared")
                out.replaceSubrange(cell, with: fixed)
                cursor = out.index(cell.lowerBound, offsetBy: fixed.count)
            } else {
                cursor = cell.upperBound
            }
        }
        changes += cellChanges
        if changes.isEmpty { return Result(xml: xml, changes: []) }
        let check: DomainMemory
        do {
            check = try DomainXML.parse(out)
        } catch {
            throw RewriteError(description: "the rewritten XML does not parse (\(error.description)); nothing was changed")
        }
        guard check.source == .file, check.hugepages.isEmpty, check.access == .shared, !check.cells.contains(where: { $0.access == .private }) else {
            throw RewriteError(description: "the rewritten XML is still not eligible; nothing was changed")
        }
        return Result(xml: out, changes: changes)
    }

    // MARK: - A small scanner over libvirt's own XML output

    /// The range of the first `<name …>…</name>` or `<name …/>` at or after `from`.
    static func findElement(_ name: String, in s: String, from: String.Index) -> Range<String.Index>? {
        guard let open = findTag(name, in: s, from: from) else { return nil }
        if s[open].hasSuffix("/>") { return open }
        guard let close = s.range(of: "</\(name)>", range: open.upperBound..<s.endIndex) else { return nil }
        return open.lowerBound..<close.upperBound
    }

    /// The range of the first start tag `<name` followed by whitespace, `>` or `/`.
    static func findTag(_ name: String, in s: String, from: String.Index) -> Range<String.Index>? {
        var at = from
        while let r = s.range(of: "<\(name)", range: at..<s.endIndex) {
            guard r.upperBound < s.endIndex else { return nil }
            let next = s[r.upperBound]
            if next == ">" || next == "/" || next.isWhitespace, let end = s.range(of: ">", range: r.upperBound..<s.endIndex) {
                return r.lowerBound..<end.upperBound
            }
            at = r.upperBound
        }
        return nil
    }

    static func innerText(_ element: String, name: String) -> String {
        guard !element.hasSuffix("/>"), let open = element.firstIndex(of: ">"),
              let close = element.range(of: "</\(name)>", options: .backwards) else { return "" }
        return String(element[element.index(after: open)..<close.lowerBound])
    }

    /// The top-level child elements of an element's inner text, each as its text.
    static func topLevelElements(_ inner: String) -> [String] {
        var out: [String] = []
        var at = inner.startIndex
        while let lt = inner[at...].firstIndex(of: "<") {
            let name = elementName(String(inner[lt...]))
            guard !name.isEmpty, let r = findElement(name, in: inner, from: lt) else { break }
            out.append(String(inner[r]))
            at = r.upperBound
        }
        return out
    }

    static func elementName(_ element: String) -> String {
        String(element.dropFirst().prefix { !$0.isWhitespace && $0 != ">" && $0 != "/" })
    }

    static func attribute(_ name: String, of tag: String) -> String? {
        for q in ["'", "\""] {
            if let r = tag.range(of: " \(name)=\(q)"), let end = tag[r.upperBound...].firstIndex(of: Character(q)) {
                return String(tag[r.upperBound..<end])
            }
        }
        return nil
    }

    static func lineIndent(_ s: String, at i: String.Index) -> String {
        let lineStart = s[..<i].lastIndex(of: "\n").map { s.index(after: $0) } ?? s.startIndex
        return String(s[lineStart..<i].prefix { $0 == " " || $0 == "\t" })
    }

    /// A multi-line element's text collapsed to one line, for messages.
    static func compact(_ element: String) -> String {
        element.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined()
    }

    static func format(_ children: some Sequence<String>, indent: String) -> String {
        var s = "<memoryBacking>\n"
        for c in children {
            for line in c.split(separator: "\n", omittingEmptySubsequences: true) {
                s += indent + "  " + line.trimmingCharacters(in: .whitespaces) + "\n"
            }
        }
        return s + indent + "</memoryBacking>"
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound] + replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

/// A unified diff of two texts by lines, for `--dry-run`.
public enum LineDiff {
    /// The diff from `a` to `b` with `context` lines around each change; empty when they are equal.
    public static func unified(_ a: String, _ b: String, from: String = "a", to: String = "b", context: Int = 3) -> String {
        let x = a.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let y = b.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Longest common subsequence table, from the ends.
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in stride(from: x.count - 1, through: 0, by: -1) {
            for j in stride(from: y.count - 1, through: 0, by: -1) {
                lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        enum Op { case same(Int, Int), del(Int), ins(Int) }
        var ops: [Op] = []
        var (i, j) = (0, 0)
        while i < x.count || j < y.count {
            if i < x.count, j < y.count, x[i] == y[j] {
                ops.append(.same(i, j)); i += 1; j += 1
            } else if i < x.count, j == y.count || lcs[i + 1][j] >= lcs[i][j + 1] {
                ops.append(.del(i)); i += 1
            } else {
                ops.append(.ins(j)); j += 1
            }
        }
        let changed = ops.indices.filter { if case .same = ops[$0] { return false } else { return true } }
        guard !changed.isEmpty else { return "" }
        // Group changes whose contexts touch into hunks.
        var hunks: [ClosedRange<Int>] = []
        for c in changed {
            let r = max(0, c - context)...min(ops.count - 1, c + context)
            if let last = hunks.last, r.lowerBound <= last.upperBound + 1 {
                hunks[hunks.count - 1] = last.lowerBound...r.upperBound
            } else {
                hunks.append(r)
            }
        }
        var out = "--- \(from)\n+++ \(to)\n"
        for h in hunks {
            // Lines of each side before the hunk.
            var aStart = 0, bStart = 0
            for op in ops[..<h.lowerBound] {
                switch op {
                case .same: aStart += 1; bStart += 1
                case .del: aStart += 1
                case .ins: bStart += 1
                }
            }
            var aLen = 0, bLen = 0
            var body = ""
            for op in ops[h] {
                switch op {
                case .same(let p, _): aLen += 1; bLen += 1; body += " \(x[p])\n"
                case .del(let p): aLen += 1; body += "-\(x[p])\n"
                case .ins(let q): bLen += 1; body += "+\(y[q])\n"
                }
            }
            out += "@@ -\(aStart + 1),\(aLen) +\(bStart + 1),\(bLen) @@\n" + body
        }
        return out
    }
}
