import Foundation
import PrezeroCore
import PrezeroProtocol

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
            // virScaleInteger: a missing or empty unit is the default scale, KiB here.
            let unit = attr(e, "unit").flatMap { $0.isEmpty ? nil : $0 } ?? "KiB"
            let bytes = try size(value ?? "", unit: unit, what: what)
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

        // virDomainNumaDefParseXML: a cell's id (its position when absent) places it; ids must
        // cover 0 … n-1 once each, in any order; every cell needs a memory attribute.
        let cellElements = elements(root, "cpu/numa/cell")
        var byId: [Int: DomainMemory.Cell] = [:]
        for (i, c) in cellElements.enumerated() {
            let id = try attr(c, "id").map { v throws(DomainXMLError) in
                guard let n = Int(v), n >= 0 else { throw DomainXMLError(description: "<cell id='\(v)'> is not a cell number: libvirt refuses it") }
                return n
            } ?? i
            guard id < cellElements.count else {
                throw DomainXMLError(description: "<cell id='\(id)'> with \(cellElements.count) cell(s): libvirt refuses ids that do not run 0 to \(cellElements.count - 1)")
            }
            guard byId[id] == nil else { throw DomainXMLError(description: "cell id \(id) is declared twice: libvirt refuses it") }
            guard let mem = attr(c, "memory") else {
                throw DomainXMLError(description: "<cell id='\(id)'> has no memory attribute: libvirt refuses it")
            }
            byId[id] = DomainMemory.Cell(bytes: try memory(c, value: mem, what: "cell \(id) memory"),
                                         access: try access(attr(c, "memAccess"), what: "cell \(id)"))
        }
        let cells = (0..<cellElements.count).compactMap { byId[$0] }

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

        var deviceFiles: [DomainMemory.DeviceFile] = []
        // In the order of QEMU's command line: shmem, then pstore.
        // virDomainShmemDefParseXML and qemuValidateDomainDeviceDefShmem: the legacy ivshmem model
        // (also what no <model> means) is refused; ivshmem-plain gets a backend, doorbell none.
        // Aliases shmem0, shmem1, … in order (qemuAssignDeviceShmemAlias).
        for (i, sh) in elements(root, "devices/shmem").enumerated() {
            let model = elements(sh, "model").first.flatMap { attr($0, "type") } ?? "ivshmem"
            guard let name = attr(sh, "name"), !name.isEmpty else { throw DomainXMLError(description: "<shmem> has no name: libvirt refuses it") }
            let sizeEl = elements(sh, "size").first
            let bytes = try sizeEl.map { e throws(DomainXMLError) in try size(e.stringValue, unit: attr(e, "unit").flatMap { $0.isEmpty ? nil : $0 } ?? "b", what: "shmem \(name) size") } ?? 0
            guard bytes == 0 || (bytes >= 1 << 20 && bytes & (bytes - 1) == 0) else {
                throw DomainXMLError(description: "shmem \(name) size \(bytes) is not a power of 2 of at least 1 MiB: libvirt refuses it")
            }
            switch model {
            case "ivshmem-plain":
                deviceFiles.append(.init(kind: .shmem, alias: elements(sh, "alias").first.flatMap { attr($0, "name") } ?? "shmem\(i)",
                                         path: "/dev/shm/\(name)", bytes: bytes))
            case "ivshmem-doorbell":
                break
            default:
                throw DomainXMLError(description: "shmem \(name) model '\(model)' is not ivshmem-plain or ivshmem-doorbell: libvirt refuses it")
            }
        }

        // virDomainPstoreDefParseXML: one <pstore>, alias pstore0 (qemuAssignDevicePstoreAlias),
        // its <size> a memory size.
        if let p = elements(root, "devices/pstore").first {
            guard attr(p, "backend") == "acpi-erst" else {
                throw DomainXMLError(description: "<pstore backend='\(attr(p, "backend") ?? "")'> is not acpi-erst: libvirt refuses it")
            }
            let sizeEl = elements(p, "size").first
            // Without a <path>, libvirt's nvram directory holds <name>_PSTORE.raw.
            deviceFiles.append(.init(kind: .pstore, alias: elements(p, "alias").first.flatMap { attr($0, "name") } ?? "pstore0",
                                     path: text(p, "path") ?? "/var/lib/libvirt/qemu/nvram/\(name)_PSTORE.raw", bytes: try memory(sizeEl, value: sizeEl?.stringValue, what: "pstore size")))
        }
        // qemuDomainEvaluateCPUMask: <emulatorpin>, else numad's advice, else <vcpu cpuset>.
        let vcpu = elements(root, "vcpu").first
        let pin = try elements(root, "cputune/emulatorpin").first.flatMap { attr($0, "cpuset") }.map { v throws(DomainXMLError) in try nodeSet(v, limit: 16384) }
        let cpusFromNumad = pin == nil && attr(vcpu, "placement") == "auto"
        var emulatorCPUs = pin
        if pin == nil, !cpusFromNumad, let set = attr(vcpu, "cpuset") { emulatorCPUs = try nodeSet(set, limit: 16384) }

        let memEl = elements(root, "memory").first
        let total = try memory(memEl, value: memEl?.stringValue, what: "<memory>")
        var owner: DomainMemory.Owner?
        for s in elements(root, "seclabel") where attr(s, "model") == "dac" {
            owner = dacLabel(text(s, "label") ?? "")
        }
        var out = DomainMemory(
            name: name, uuid: uuid, id: attr(root, "id").flatMap { Int($0) }, arch: attr(osType, "arch"),
            machine: attr(osType, "machine"), virtType: attr(root, "type"), emulator: text(root, "devices/emulator"),
            total: total, source: source, access: domainAccess, immediate: immediate, hugepages: hugepages,
            numatune: numatune, memnodes: memnodes, cells: cells, devices: devices, deviceFiles: deviceFiles, owner: owner)
        out.emulatorCPUs = emulatorCPUs
        out.cpusFromNumad = cpusFromNumad
        return out
    }

    /// `+107:+107` → (107, 107). Names (`qemu:kvm`) are not resolved here.
    public static func dacLabel(_ label: String) -> DomainMemory.Owner? {
        let parts = label.split(separator: ":")
        guard parts.count == 2, parts[0].hasPrefix("+"), parts[1].hasPrefix("+"),
              let u = UInt32(parts[0].dropFirst()), let g = UInt32(parts[1].dropFirst()) else { return nil }
        return DomainMemory.Owner(uid: u, gid: g)
    }

    /// libvirt's scaled integers (virScaleInteger), the unit's case ignored: b, byte, bytes; a
    /// letter k, m, g, t, p or e alone or with `iB` is a power of 1024, with `B` a power of 1000.
    public static func size(_ value: String, unit: String, what: String) throws(DomainXMLError) -> UInt64 {
        guard let n = UInt64(value.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw DomainXMLError(description: "\(what) '\(value)' is not a number")
        }
        guard let scale = unitScale(unit) else {
            throw DomainXMLError(description: "\(what) has an unknown unit '\(unit)': libvirt refuses it (b, KiB, MiB, GiB, TiB, KB, MB, …)")
        }
        let (v, o) = n.multipliedReportingOverflow(by: scale)
        // libvirt caps memory at ULLONG_MAX KiB; anything past 2^62 bytes is no real guest.
        guard !o, v <= 1 << 62 else { throw DomainXMLError(description: "\(what) is too large") }
        return v
    }

    /// The bytes one `unit` stands for, as virScaleInteger reads it; nil for a unit libvirt refuses.
    static func unitScale(_ unit: String) -> UInt64? {
        let u = unit.lowercased()
        if ["b", "byte", "bytes"].contains(u) { return 1 }
        let chars = Array(u)
        guard let first = chars.first, let power = ["k", "m", "g", "t", "p", "e"].firstIndex(of: first) else { return nil }
        let rest = String(chars.dropFirst())
        let base: UInt64
        switch rest {
        case "", "ib": base = 1024
        case "b": base = 1000
        default: return nil
        }
        var scale: UInt64 = 1
        for _ in 0...power { scale *= base }
        return scale
    }

    /// libvirt node and CPU sets: `0-3,^2,8`, each number below `limit`.
    public static func nodeSet(_ text: String?, limit: Int = 4096) throws(DomainXMLError) -> [Int] {
        guard let text, !text.isEmpty else { return [] }
        var set = Set<Int>()
        var excluded = Set<Int>()
        for part in text.split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces)
            let neg = p.hasPrefix("^")
            let body = neg ? String(p.dropFirst()) : p
            let r = body.split(separator: "-", omittingEmptySubsequences: false)
            var nodes: [Int] = []
            if r.count == 1, let a = Int(r[0]), a >= 0, a < limit { nodes = [a] }
            else if r.count == 2, let a = Int(r[0]), let b = Int(r[1]), a >= 0, a <= b, b < limit { nodes = Array(a...b) }
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
