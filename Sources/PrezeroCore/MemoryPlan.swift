import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// One memory backend QEMU will open for a domain.
public struct MemoryBackend: Equatable, Sendable, Codable {
    /// `pc.ram` without guest NUMA, `ram-node<N>` per `<cell>`.
    public var alias: String
    public var bytes: UInt64
    /// Host nodes its pages may come from; empty means any node.
    public var hostNodes: [Int]
    /// Mapped shared (`<access mode='shared'/>` or the cell's `memAccess`).
    public var shared: Bool

    public init(alias: String, bytes: UInt64, hostNodes: [Int], shared: Bool) {
        self.alias = alias
        self.bytes = bytes
        self.hostNodes = hostNodes
        self.shared = shared
    }

    enum CodingKeys: String, CodingKey {
        case alias, bytes, shared
        case hostNodes = "host_nodes"
    }
}

/// What a libvirt domain XML says about guest memory, as QEMU will get it.
public struct DomainMemory: Equatable, Sendable {
    public var name: String
    public var uuid: String
    /// The running id; only the start-time XML has one.
    public var id: Int?
    public var backends: [MemoryBackend]
    /// `<memoryBacking><source type='file'/>`.
    public var fileSource: Bool
    /// `<memoryBacking><hugepages>` and its page size in bytes (nil: the host default).
    public var hugepages: Bool
    public var hugepageSize: UInt64?
    /// DAC owner from `<seclabel model='dac'><label>+UID:+GID`.
    public var owner: (uid: UInt32, gid: UInt32)?
    /// Memory hot-plug DIMMs (`memdimmN`): left to QEMU.
    public var dimms: Int

    public static func == (a: DomainMemory, b: DomainMemory) -> Bool {
        a.name == b.name && a.uuid == b.uuid && a.id == b.id && a.backends == b.backends && a.fileSource == b.fileSource
            && a.hugepages == b.hugepages && a.hugepageSize == b.hugepageSize && a.owner?.uid == b.owner?.uid
            && a.owner?.gid == b.owner?.gid && a.dimms == b.dimms
    }
}

public struct DomainXMLError: Error, Equatable, CustomStringConvertible {
    public var description: String
}

/// Domain XML → memory plan. Pure: the XML comes in as text.
public enum DomainXML {
    public static func parse(_ xml: String) throws(DomainXMLError) -> DomainMemory {
        // libvirt never sends a DTD; refusing one keeps entities (and their files) out.
        // An empty or NUL-carrying text crashes FoundationXML, so it never gets there.
        guard !xml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, !xml.contains("\0") else {
            throw DomainXMLError(description: "domain XML is empty")
        }
        guard !xml.contains("<!DOCTYPE"), !xml.contains("<!ENTITY") else {
            throw DomainXMLError(description: "domain XML carries a DTD or entities, which libvirt never sends")
        }
        // FoundationXML recovers from broken XML; a strict parse first refuses it.
        let strict = XMLParser(data: Data(xml.utf8))
        strict.shouldResolveExternalEntities = false
        guard strict.parse(), xml.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("</domain>") else {
            throw DomainXMLError(description: "domain XML is not well-formed (truncated?): \(strict.parserError.map { "\($0.localizedDescription)" } ?? "parse error")")
        }
        let doc: XMLDocument
        do {
            doc = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw DomainXMLError(description: "domain XML does not parse: \(error.localizedDescription)")
        }
        guard let root = doc.rootElement(), root.name == "domain" else {
            throw DomainXMLError(description: "domain XML has no <domain> root element")
        }
        func text(_ path: String) -> String? {
            (try? root.nodes(forXPath: path))?.first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func attr(_ e: XMLElement?, _ name: String) -> String? { e?.attribute(forName: name)?.stringValue }
        func elements(_ path: String) -> [XMLElement] { ((try? root.nodes(forXPath: path)) ?? []).compactMap { $0 as? XMLElement } }

        guard let name = text("name"), !name.isEmpty else { throw DomainXMLError(description: "domain XML has no <name>") }
        guard let uuid = text("uuid")?.lowercased(), UUIDText.valid(uuid) else {
            throw DomainXMLError(description: "domain XML has no valid <uuid>")
        }
        let id = attr(root, "id").flatMap { Int($0) }
        let fileSource = elements("memoryBacking/source").contains { attr($0, "type") == "file" }
        let hugepages = !elements("memoryBacking/hugepages").isEmpty
        let hugepageSize = try elements("memoryBacking/hugepages/page").first.map { e throws(DomainXMLError) in
            let v = try size(attr(e, "size") ?? "", unit: attr(e, "unit") ?? "KiB", what: "hugepages page size")
            guard v > 0 else { throw DomainXMLError(description: "hugepages page size is 0") }
            return v
        }
        let domainShared = elements("memoryBacking/access").contains { attr($0, "mode") == "shared" }

        // Host nodes: <numatune><memnode cellid=N> overrides <numatune><memory> for its cell.
        let tuneMemory = elements("numatune/memory").first
        let defaultNodes: [Int] = attr(tuneMemory, "placement") == "auto" ? [] : try nodeSet(attr(tuneMemory, "nodeset"))
        var cellNodes: [Int: [Int]] = [:]
        for m in elements("numatune/memnode") {
            guard let c = attr(m, "cellid").flatMap({ Int($0) }) else { continue }
            cellNodes[c] = try nodeSet(attr(m, "nodeset"))
        }

        let total = try size(text("memory") ?? "", unit: attr(elements("memory").first, "unit") ?? "KiB", what: "<memory>")
        let dimmElements = elements("devices/memory")
        var dimmBytes: UInt64 = 0
        for d in dimmElements {
            let t = (try? d.nodes(forXPath: "target/size"))?.first as? XMLElement
            let (sum, o) = dimmBytes.addingReportingOverflow(try size(t?.stringValue ?? "0", unit: attr(t, "unit") ?? "KiB", what: "DIMM size"))
            guard !o else { throw DomainXMLError(description: "DIMM sizes are too large") }
            dimmBytes = sum
        }

        var backends: [MemoryBackend] = []
        let cells = elements("cpu/numa/cell")
        if cells.isEmpty {
            guard total > dimmBytes else { throw DomainXMLError(description: "domain memory \(total) is not larger than its DIMMs \(dimmBytes)") }
            backends.append(MemoryBackend(alias: "pc.ram", bytes: total - dimmBytes, hostNodes: defaultNodes, shared: domainShared))
        } else {
            for (i, c) in cells.enumerated() {
                let cid = attr(c, "id").flatMap { Int($0) } ?? i
                let bytes = try size(attr(c, "memory") ?? "", unit: attr(c, "unit") ?? "KiB", what: "cell \(cid) memory")
                let access = attr(c, "memAccess")
                let shared = access == "shared" || (access == nil && domainShared)
                backends.append(MemoryBackend(alias: "ram-node\(cid)", bytes: bytes, hostNodes: cellNodes[cid] ?? defaultNodes, shared: shared))
            }
        }

        var owner: (UInt32, UInt32)?
        for s in elements("seclabel") where attr(s, "model") == "dac" {
            let label = ((try? s.nodes(forXPath: "label"))?.first?.stringValue ?? "").trimmingCharacters(in: .whitespaces)
            owner = dacLabel(label)
        }
        return DomainMemory(name: name, uuid: uuid, id: id, backends: backends, fileSource: fileSource,
                            hugepages: hugepages, hugepageSize: hugepageSize, owner: owner, dimms: dimmElements.count)
    }

    /// `+107:+107` → (107, 107). Names (`qemu:kvm`) are not resolved here.
    public static func dacLabel(_ label: String) -> (uid: UInt32, gid: UInt32)? {
        let parts = label.split(separator: ":")
        guard parts.count == 2, parts[0].hasPrefix("+"), parts[1].hasPrefix("+"),
              let u = UInt32(parts[0].dropFirst()), let g = UInt32(parts[1].dropFirst()) else { return nil }
        return (u, g)
    }

    /// libvirt's scaled integers: `unit` b/bytes, KB/MB/GB/TB (powers of 1000), k/KiB, M/MiB, G/GiB, T/TiB (powers of 1024).
    public static func size(_ value: String, unit: String, what: String) throws(DomainXMLError) -> UInt64 {
        guard let n = UInt64(value.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw DomainXMLError(description: "\(what) '\(value)' is not a number")
        }
        let scale: UInt64
        switch unit {
        case "b", "bytes": scale = 1
        case "KB": scale = 1000
        case "k", "K", "KiB": scale = 1 << 10
        case "MB": scale = 1_000_000
        case "M", "MiB": scale = 1 << 20
        case "GB": scale = 1_000_000_000
        case "G", "GiB": scale = 1 << 30
        case "TB": scale = 1_000_000_000_000
        case "T", "TiB": scale = 1 << 40
        default: throw DomainXMLError(description: "\(what) has an unknown unit '\(unit)'")
        }
        let (v, o) = n.multipliedReportingOverflow(by: scale)
        guard !o else { throw DomainXMLError(description: "\(what) is too large") }
        return v
    }

    /// libvirt node sets: `0-3,^2,8`.
    public static func nodeSet(_ text: String?) throws(DomainXMLError) -> [Int] {
        guard let text, !text.isEmpty else { return [] }
        var set = Set<Int>()
        var excluded = Set<Int>()
        for part in text.split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces)
            let neg = p.hasPrefix("^")
            let body = neg ? String(p.dropFirst()) : p
            let r = body.split(separator: "-", omittingEmptySubsequences: false)
            var nodes: [Int] = []
            if r.count == 1, let a = Int(r[0]), a >= 0 { nodes = [a] }
            else if r.count == 2, let a = Int(r[0]), let b = Int(r[1]), a >= 0, a <= b, b < 4096 { nodes = Array(a...b) }
            else { throw DomainXMLError(description: "node set '\(text)' is not valid") }
            if neg { excluded.formUnion(nodes) } else { set.formUnion(nodes) }
        }
        return set.subtracting(excluded).sorted()
    }
}

public enum UUIDText {
    public static func valid(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
    }
}
