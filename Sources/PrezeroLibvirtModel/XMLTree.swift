import Foundation
#if canImport(FoundationXML)
import FoundationXML
import PrezeroCore
#endif

/// An XML document as values, read in one strict pass of libxml2's SAX parser
/// (Foundation's `XMLParser`). FoundationXML's `XMLDocument` is not used: on Linux its
/// nodes and their document keep each other alive, so every document it parses is
/// leaked (LeakSanitizer, under `make fuzz`), and prezerod parses one at every hook call.
public struct XMLTree: Equatable, Sendable {
    public indirect enum Node: Equatable, Sendable {
        case element(Element)
        case text(String)
        case comment(String)
    }

    /// One element: its name, its attributes, and what it holds in document order.
    public struct Element: Equatable, Sendable {
        public var name: String
        public var attributes: [String: String]
        public var nodes: [Node]

        /// An element with the given attributes and content; none by default.
        public init(name: String, attributes: [String: String] = [:], nodes: [Node] = []) {
            self.name = name
            self.attributes = attributes
            self.nodes = nodes
        }

        public var children: [Element] {
            nodes.compactMap { if case .element(let e) = $0 { e } else { nil } }
        }

        /// The child elements at a path of names (`cpu/numa/cell`), in document order.
        public func elements(_ path: String) -> [Element] {
            path.split(separator: "/").reduce([self]) { found, name in
                found.flatMap { $0.children.filter { $0.name == name } }
            }
        }

        /// The first element at a path of names (see `elements`), or nil.
        public func first(_ path: String) -> Element? { elements(path).first }

        /// All the text inside, as XPath's string value: comments left out.
        public var stringValue: String {
            nodes.map {
                switch $0 {
                case .element(let e): e.stringValue
                case .text(let t): t
                case .comment: ""
                }
            }.joined()
        }
    }

    public var root: Element

    /// Why a document is not well-formed, in one line.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        @OneLine public var description: String
    }

    /// A document that is not well-formed throws, with where and why on one line.
    /// External entities are never loaded.
    ///
    /// Foundation's parser runs libxml2 in recovery mode and still returns true after
    /// some fatal errors (content after the root element), so any error it reports
    /// fails the parse, and a tree built while recovering is thrown away.
    public static func parse(_ text: String) throws(ParseError) -> XMLTree {
        guard !text.contains("\0") else { throw ParseError(description: "the document carries a NUL byte") }
        let parser = XMLParser(data: Data(text.utf8))
        parser.shouldResolveExternalEntities = false
        let builder = Builder()
        parser.delegate = builder
        let parsed = parser.parse()
        if let failure = builder.failure {
            throw ParseError(description: failure)
        }
        guard parsed, parser.parserError == nil, let root = builder.root else {
            throw ParseError(description: parser.parserError.map { "\(reason(($0 as NSError).code))" } ?? "no root element")
        }
        return XMLTree(root: root)
    }

    /// libxml2's `xmlParserErrors` that malformed or cut documents raise, in words.
    static func reason(_ code: Int) -> String {
        let words: [Int: String] = [
            4: "the document is empty", 5: "the root element is cut short or followed by more content",
            26: "an entity is not defined", 38: "an attribute is not closed",
            41: "an attribute has no value", 73: "a tag is not closed with '>'",
            76: "an end tag does not match its start tag", 77: "the document ends inside an element",
        ]
        return "\(words[code] ?? "malformed XML") (libxml2 error \(code))"
    }

    /// The open elements as a stack; an element joins its parent when it closes.
    private final class Builder: NSObject, XMLParserDelegate {
        var open: [Element] = []
        var root: Element?
        /// The first error, with where it is.
        var failure: String?

        func add(_ node: Node) {
            guard !open.isEmpty else { return }
            // Adjacent character runs (libxml2 splits text at entities) are one text node.
            if case .text(let more) = node, case .text(let sofar)? = open[open.count - 1].nodes.last {
                open[open.count - 1].nodes[open[open.count - 1].nodes.count - 1] = .text(sofar + more)
            } else {
                open[open.count - 1].nodes.append(node)
            }
        }

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            open.append(Element(name: elementName, attributes: attributeDict))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
            guard let done = open.popLast() else { return }
            if open.isEmpty { root = done } else { add(.element(done)) }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { add(.text(string)) }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) { add(.text(String(decoding: CDATABlock, as: UTF8.self))) }

        func parser(_ parser: XMLParser, foundComment comment: String) { add(.comment(comment)) }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
            guard failure == nil else { return }
            failure = "line \(parser.lineNumber), column \(parser.columnNumber): \(XMLTree.reason((parseError as NSError).code))"
        }
    }
}
