import Foundation
import PrezeroCore
import PrezeroProtocol

/// What a libvirt domain XML says about guest memory: the parts of libvirt 9.0's
/// `virDomainDef` (`mem`, `numa`, `mems`) that decide the backends QEMU gets.
/// Sizes are in bytes, rounded up to whole KiB as libvirt stores them.
public struct DomainMemory: Equatable, Sendable {
    /// `<memoryBacking><source type>`; `none` when it is absent.
    public enum Source: String, Sendable { case none, file, anonymous, memfd }
    /// `<access mode>` (`memAccess` on a cell); `default` when it is absent.
    public enum Access: String, Sendable { case `default`, shared, `private` }

    /// One `<memoryBacking><hugepages><page>`; `size` 0 is `<hugepages/>` with no page.
    public struct HugePage: Equatable, Sendable {
        public var size: UInt64
        /// Guest cells it applies to; nil: every cell without a page of its own.
        public var cells: [Int]?
    }

    /// `<numatune><memory>` or one `<memnode>`.
    public struct Tune: Equatable, Sendable {
        public var mode: String
        /// Host nodes; nil with `placement='auto'` (numad's advice, unknown here).
        public var nodes: [Int]?
    }

    /// One guest NUMA cell, `<cpu><numa><cell>`: its memory and its `memAccess`.
    public struct Cell: Equatable, Sendable {
        public var bytes: UInt64
        public var access: Access
    }

    /// A `<devices><memory>` device.
    public struct Device: Equatable, Sendable {
        /// The `<memory model>` values libvirt 9.0 knows.
        public enum Model: String, Sendable, CaseIterable {
            case dimm, nvdimm, virtioPmem = "virtio-pmem", virtioMem = "virtio-mem", sgxEPC = "sgx-epc"
            /// qemuAssignDeviceMemoryAlias's prefixes.
            var aliasPrefix: String {
                switch self {
                case .dimm: "dimm"
                case .nvdimm: "nvdimm"
                case .virtioPmem: "virtiopmem"
                case .virtioMem: "virtiomem"
                case .sgxEPC: "epc"
                }
            }
        }
        public var model: Model
        public var alias: String
        public var access: Access
        public var bytes: UInt64
        public var targetNode: Int?
        /// `<source><pagesize>`; 0 when absent.
        public var pageSize: UInt64
        /// `<source><nodemask>`.
        public var sourceNodes: [Int]?
        /// `<source><path>` of an nvdimm or virtio-pmem.
        public var path: String?
        public var pmem: Bool
        /// virtio-mem's `<target><requested>`.
        public var requested: UInt64
    }

    /// The uid and gid QEMU runs as for this domain: a handed-over file becomes theirs.
    public struct Owner: Equatable, Sendable {
        public var uid: UInt32
        public var gid: UInt32
        /// An owner by uid and gid.
        public init(uid: UInt32, gid: UInt32) {
            self.uid = uid
            self.gid = gid
        }
    }

    public var name: String
    public var uuid: String
    /// The running id; only the start-time XML has one.
    public var id: Int?
    public var arch: String?
    public var machine: String?
    /// `<domain type>`: kvm or qemu.
    public var virtType: String?
    public var emulator: String?
    /// `<memory>`: everything, devices included.
    public var total: UInt64
    public var source: Source
    public var access: Access
    public var immediate: Bool
    public var hugepages: [HugePage]
    public var numatune: Tune?
    public var memnodes: [Int: Tune]
    public var cells: [Cell]
    public var devices: [Device]
    /// DAC owner from `<seclabel model='dac'><label>+UID:+GID`.
    public var owner: Owner?
}

/// Why a domain XML cannot be read or would be refused by libvirt, in one line.
public struct DomainXMLError: Error, Equatable, CustomStringConvertible {
    @OneLine public var description: String
}

/// Domain XML → `DomainMemory`. Pure: the XML comes in as text.
public enum DomainXML {
    /// Reads a domain XML as libvirt 9.0 would; what libvirt refuses throws, and so do a DTD and entities.
    public static func parse(_ xml: String) throws(DomainXMLError) -> DomainMemory {
        // libvirt never sends a DTD; refusing one keeps entities (and their files) out.
        // An empty or NUL-carrying text is refused before any parser sees it.
        guard !xml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, !xml.contains("\0") else {
            throw DomainXMLError(description: "domain XML is empty")
        }
        guard !xml.contains("<!DOCTYPE"), !xml.contains("<!ENTITY") else {
            throw DomainXMLError(description: "domain XML carries a DTD or entities, which libvirt never sends")
        }
        let root: XMLTree.Element
        do {
            root = try XMLTree.parse(xml).root
        } catch {
            throw DomainXMLError(description: "domain XML is not well-formed (truncated?): \(error.description)")
        }
        guard root.name == "domain" else {
            throw DomainXMLError(description: "domain XML has no <domain> root element")
        }
        return try read(root)
    }

    static func read(_ root: XMLTree.Element) throws(DomainXMLError) -> DomainMemory {
        typealias Element = XMLTree.Element
        func elements(_ e: Element, _ path: String) -> [Element] { e.elements(path) }
        func text(_ e: Element, _ path: String) -> String? {
            e.first(path)?.stringValue.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func attr(_ e: Element?, _ name: String) -> String? { e?.attributes[name] }
        /// virDomainParseMemory: a scaled value, stored in KiB rounded up.
        func memory(_ e: Element?, value: String?, what: String) throws(DomainXMLError) -> UInt64 {
            let bytes = try size(value ?? "", unit: attr(e, "unit") ?? "KiB", what: what)
            return ByteSize.roundUp(bytes, to: 1024)
        }
        func access(_ s: String?, what: String) throws(DomainXMLError) -> DomainMemory.Access {
            guard let s else { return .default }
            guard let a = DomainMemory.Access(rawValue: s), a != .default else {
                throw DomainXMLError(description: "\(what) access mode '\(s)' is not shared or private")
            }
            return a
        }

        guard let name = text(root, "name"), !name.isEmpty else { throw DomainXMLError(description: "domain XML has no <name>") }
        guard let uuid = text(root, "uuid")?.lowercased(), UUIDText.valid(uuid) else {
            throw DomainXMLError(description: "domain XML has no valid <uuid>")
        }
        let osType = elements(root, "os/type").first
        let backing = elements(root, "memoryBacking").first
        var source = DomainMemory.Source.none
        if let s = backing.flatMap({ elements($0, "source").first }) {
            guard let t = DomainMemory.Source(rawValue: attr(s, "type") ?? ""), t != .none else {
                throw DomainXMLError(description: "<memoryBacking><source type='\(attr(s, "type") ?? "")'> is not file, anonymous or memfd")
            }
            source = t
        }
        let domainAccess = try access(backing.flatMap { elements($0, "access").first }.flatMap { attr($0, "mode") }, what: "<memoryBacking>")
        let immediate = backing.flatMap { elements($0, "allocation").first }.flatMap { attr($0, "mode") } == "immediate"

        var hugepages: [DomainMemory.HugePage] = []
        if let h = backing.flatMap({ elements($0, "hugepages").first }) {
            let pages = elements(h, "page")
            if pages.isEmpty { hugepages = [DomainMemory.HugePage(size: 0, cells: nil)] }
            for p in pages {
                let s = try memory(p, value: attr(p, "size"), what: "hugepages page size")
                guard s > 0 else { throw DomainXMLError(description: "hugepages page size is 0") }
                let cells = try attr(p, "nodeset").map { v throws(DomainXMLError) in try nodeSet(v) }
                hugepages.append(DomainMemory.HugePage(size: s, cells: cells))
            }
        }

        func tune(_ e: Element) throws(DomainXMLError) -> DomainMemory.Tune {
            let mode = attr(e, "mode") ?? "strict"
            guard ["strict", "preferred", "interleave", "restrictive"].contains(mode) else {
                throw DomainXMLError(description: "numatune mode '\(mode)' is not strict, preferred, interleave or restrictive")
            }
            return DomainMemory.Tune(mode: mode, nodes: attr(e, "placement") == "auto" ? nil : try nodeSet(attr(e, "nodeset")))
        }
        let numatune = try elements(root, "numatune/memory").first.map { e throws(DomainXMLError) in try tune(e) }
        var memnodes: [Int: DomainMemory.Tune] = [:]
        for m in elements(root, "numatune/memnode") {
            guard let c = attr(m, "cellid").flatMap({ Int($0) }), c >= 0 else {
                throw DomainXMLError(description: "<memnode> has no valid cellid")
            }
            memnodes[c] = try tune(m)
        }

        var cells: [DomainMemory.Cell] = []
        for (i, c) in elements(root, "cpu/numa/cell").enumerated() {
            // virDomainNumaDefParseXML: ids must be 0, 1, … in order.
            if let id = attr(c, "id"), Int(id) != i {
                throw DomainXMLError(description: "<cell id='\(id)'> is out of order: libvirt needs ids 0, 1, … in order")
            }
            cells.append(DomainMemory.Cell(bytes: try memory(c, value: attr(c, "memory"), what: "cell \(i) memory"),
                                           access: try access(attr(c, "memAccess"), what: "cell \(i)")))
        }

        var devices: [DomainMemory.Device] = []
        let memoryDevices = elements(root, "devices/memory")
        // qemuDomainAssignMemorySlots: DIMMs and NVDIMMs without an <address type='dimm' slot>
        // take the lowest free slots in order; their alias is the slot (qemuDeviceMemoryGetAliasID).
        // virtio-mem, virtio-pmem and SGX EPC are numbered per prefix instead.
        let explicitSlots = Set(memoryDevices.compactMap { e in
            elements(e, "address").first.flatMap { attr($0, "type") == "dimm" ? attr($0, "slot").flatMap { Int($0) } : nil }
        })
        var nextSlot = 0
        var counters: [DomainMemory.Device.Model: Int] = [:]
        for d in memoryDevices {
            guard let model = DomainMemory.Device.Model(rawValue: attr(d, "model") ?? "") else {
                throw DomainXMLError(description: "memory device model '\(attr(d, "model") ?? "")' is unknown (dimm, nvdimm, virtio-pmem, virtio-mem, sgx-epc)")
            }
            var index: Int
            if model == .dimm || model == .nvdimm {
                if let slot = elements(d, "address").first.flatMap({ attr($0, "slot") }).flatMap({ Int($0) }) {
                    index = slot
                } else {
                    while explicitSlots.contains(nextSlot) { nextSlot += 1 }
                    index = nextSlot
                    nextSlot += 1
                }
            } else {
                index = counters[model, default: 0]
                counters[model, default: 0] += 1
            }
            let alias = elements(d, "alias").first.flatMap { attr($0, "name") } ?? "\(model.aliasPrefix)\(index)"
            let src = elements(d, "source").first
            let target = elements(d, "target").first
            let sizeEl = target.flatMap { elements($0, "size").first }
            let pageEl = src.flatMap { elements($0, "pagesize").first }
            let reqEl = target.flatMap { elements($0, "requested").first }
            let node = try target.flatMap { text($0, "node") }.map { v throws(DomainXMLError) in
                guard let n = Int(v), n >= 0 else { throw DomainXMLError(description: "\(alias): target node '\(v)' is not valid") }
                return n
            }
            devices.append(DomainMemory.Device(
                model: model, alias: alias, access: try access(attr(d, "access"), what: alias),
                bytes: try memory(sizeEl, value: sizeEl?.stringValue, what: "\(alias) size"),
                targetNode: node,
                pageSize: try pageEl.map { e throws(DomainXMLError) in try memory(e, value: e.stringValue, what: "\(alias) page size") } ?? 0,
                sourceNodes: try src.flatMap { text($0, "nodemask") }.map { v throws(DomainXMLError) in try nodeSet(v) },
                path: src.flatMap { text($0, "path") },
                pmem: src.map { !elements($0, "pmem").isEmpty } ?? false,
                requested: try reqEl.map { e throws(DomainXMLError) in try memory(e, value: e.stringValue, what: "\(alias) requested size") } ?? 0))
        }

        let memEl = elements(root, "memory").first
        let total = try memory(memEl, value: memEl?.stringValue, what: "<memory>")
        var owner: DomainMemory.Owner?
        for s in elements(root, "seclabel") where attr(s, "model") == "dac" {
            owner = dacLabel(text(s, "label") ?? "")
        }
        return DomainMemory(
            name: name, uuid: uuid, id: attr(root, "id").flatMap { Int($0) }, arch: attr(osType, "arch"),
            machine: attr(osType, "machine"), virtType: attr(root, "type"), emulator: text(root, "devices/emulator"),
            total: total, source: source, access: domainAccess, immediate: immediate, hugepages: hugepages,
            numatune: numatune, memnodes: memnodes, cells: cells, devices: devices, owner: owner)
    }

    /// `+107:+107` → (107, 107). Names (`qemu:kvm`) are not resolved here.
    public static func dacLabel(_ label: String) -> DomainMemory.Owner? {
        let parts = label.split(separator: ":")
        guard parts.count == 2, parts[0].hasPrefix("+"), parts[1].hasPrefix("+"),
              let u = UInt32(parts[0].dropFirst()), let g = UInt32(parts[1].dropFirst()) else { return nil }
        return DomainMemory.Owner(uid: u, gid: g)
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
        // libvirt caps memory at ULLONG_MAX KiB; anything past 2^62 bytes is no real guest.
        guard !o, v <= 1 << 62 else { throw DomainXMLError(description: "\(what) is too large") }
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
            if r.count == 1, let a = Int(r[0]), a >= 0, a < 4096 { nodes = [a] }
            else if r.count == 2, let a = Int(r[0]), let b = Int(r[1]), a >= 0, a <= b, b < 4096 { nodes = Array(a...b) }
            else { throw DomainXMLError(description: "node set '\(text)' is not valid") }
            if neg { excluded.formUnion(nodes) } else { set.formUnion(nodes) }
        }
        return set.subtracting(excluded).sorted()
    }
}

/// A domain UUID as text.
public enum UUIDText {
    /// Whether `s` is 8-4-4-4-12 hex digits, as libvirt writes a UUID.
    public static func valid(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
    }
}
