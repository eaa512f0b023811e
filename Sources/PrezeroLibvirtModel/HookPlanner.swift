import Foundation
import PrezeroCore
import PrezeroProtocol
import PrezeroQemuModel

/// What prezero does for one backend at libvirt's `start begin`.
public enum BackendDecision: String, Equatable, Sendable, Codable {
    /// Link a pre-zeroed pool file at the backend's path.
    case handOver = "hand-over"
    /// QEMU takes huge pages itself: free that many first, on the backend's nodes.
    case makeRoom = "make-room"
    /// The backend takes no huge pages, or its memory is not prezero's to touch.
    case nothing
}

/// One backend and the decision for it.
public struct BackendPlan: Equatable, Sendable {
    public var backend: MemoryBackend
    public var decision: BackendDecision
    /// The size of the pages it takes: the huge-page size for hand-over and make-room,
    /// the system page size otherwise.
    public var pageSize: UInt64
    public var reason: String
}

/// Every backend of a domain with its decision.
public struct DomainPlan: Equatable, Sendable {
    public var backends: [BackendPlan]

    public var handOvers: [BackendPlan] { backends.filter { $0.decision == .handOver } }

    /// Pages to free before QEMU starts, per page size and node, for the
    /// make-room backends, and for the hand-overs too when `includingHandOvers`
    /// (a hand-over that cannot happen at run time falls back to QEMU allocating).
    public func makeRoom(includingHandOvers: Bool = false) -> [UInt64: [NodeChoice: UInt64]] {
        var out: [UInt64: [NodeChoice: UInt64]] = [:]
        for p in backends where p.decision == .makeRoom || (includingHandOvers && p.decision == .handOver) {
            let perNode = p.backend.nodesFromNumad
                ? HookPlanner.pagesPerNode(bytes: p.backend.startBytes, nodes: [], pageSize: p.pageSize)[.any].map { [NodeChoice.every: $0] } ?? [:]
                : HookPlanner.pagesPerNode(bytes: p.backend.startBytes, nodes: p.backend.hostNodes, pageSize: p.pageSize)
            for (node, pages) in perNode {
                out[p.pageSize, default: [:]][node, default: 0] += pages
            }
        }
        return out
    }
}

/// Where pages are wanted: on a given host node, on any (memory bound to no node), or on
/// every node (bound to nodes numad picks at start, unknown until then).
public enum NodeChoice: Hashable, Comparable, Sendable, CustomStringConvertible {
    case any
    case every
    case node(Int)

    public var node: Int? {
        if case .node(let n) = self { return n }
        return nil
    }
    /// As a person reads it: "any node" or "node N".
    public var description: String {
        switch self {
        case .any: "any node"
        case .every: "every node"
        case .node(let n): "node \(n)"
        }
    }
}

/// What prezerod does at `start begin` for each backend of a domain: hand a file over,
/// make room, or nothing, and why.
public enum HookPlanner {
    /// The per-backend decision for a domain, from the backends its libvirt will create.
    /// A domain libvirt itself would refuse throws, and is left to libvirt.
    public static func plan(_ d: DomainMemory, host: HookHost) throws(PlanError) -> DomainPlan {
        DomainPlan(backends: try LibvirtBackends.plan(d, host: host).map { decide($0, host: host) })
    }

    /// Hand over: a file under memory_backing_dir, mapped shared, on a pool mount, in whole
    /// pages. Make room: anything else that takes huge pages. Nothing: the rest. Each says why.
    public static func decide(_ b: MemoryBackend, host: HookHost) -> BackendPlan {
        func plan(_ d: BackendDecision, _ ps: UInt64, _ why: String) -> BackendPlan {
            BackendPlan(backend: b, decision: d, pageSize: ps, reason: why)
        }
        let system = host.systemPageSize
        if b.id == nil {
            return plan(.nothing, system, "system RAM of a machine type whose RAM id prezero cannot know (libvirt's capabilities cache names none): QEMU names it, so it is left alone; --machine-ram-id names it")
        }
        switch (b.kind, b.path) {
        case (.epc, _):
            return plan(.nothing, system, "SGX EPC is enclave memory, not huge pages")
        case (.ram, _):
            return plan(.nothing, system, "memory-backend-ram: ordinary memory")
        case (.memfd, _):
            return b.hugepageSize > 0
                ? plan(.makeRoom, b.hugepageSize, "memfd with hugetlb=on: QEMU allocates its huge pages itself")
                : plan(.nothing, system, "memfd without hugetlb: ordinary memory")
        case (.file, .deviceFile(let p)?):
            return plan(.nothing, host.mount(of: p)?.pageSize ?? system, "the \(b.model?.rawValue ?? b.device)'s own file \(p): left alone")
        case (.file, .hugepageDirectory(let p)?):
            return plan(.makeRoom, b.hugepageSize, "<hugepages>: QEMU gets the directory \(p) and creates its own file there, so nothing can be handed over")
        case (.file, .backingFile(let p)?):
            guard let m = host.mount(of: p) else {
                return plan(.nothing, system, "memory_backing_dir \(host.backingBase) is not on hugetlbfs: ordinary memory")
            }
            let ps = m.pageSize
            if b.model == .virtioMem {
                return plan(.makeRoom, ps, "virtio-mem discards its whole backend when QEMU realizes it, which would empty a pre-zeroed file")
            }
            if !b.shared {
                return plan(.makeRoom, ps, "mapped private (no <access mode='shared'/>): QEMU would copy every page it writes, so it is not handed over")
            }
            if !host.isPoolMount(m) {
                return plan(.makeRoom, ps, "\(m.path) is not one of prezerod's pool mounts")
            }
            if b.bytes == 0 || b.bytes % ps != 0 {
                return plan(.makeRoom, ps, "\(b.bytes) bytes is not a whole number of \(ByteSize.format(ps)) pages")
            }
            if b.nodesFromNumad {
                return plan(.makeRoom, ps, "placement='auto': libvirt binds it to the nodes numad advises at start, which the hook cannot know, so QEMU allocates it there (room is made on every node)")
            }
            return plan(.handOver, ps, "a shared file under memory_backing_dir on pool mount \(m.path)")
        case (.file, nil):
            return plan(.nothing, system, "no mem-path")
        }
    }

    /// Pages each node must have free for `bytes`; unbound memory counts under `.any`.
    /// Bound to several nodes, the kernel may take them from any: each is asked for its share, rounded up.
    public static func pagesPerNode(bytes: UInt64, nodes: [Int], pageSize: UInt64) -> [NodeChoice: UInt64] {
        guard pageSize > 0, bytes > 0 else { return [:] }
        let pages = bytes / pageSize + (bytes % pageSize == 0 ? 0 : 1)
        if nodes.isEmpty { return [.any: pages] }
        let share = (pages + UInt64(nodes.count) - 1) / UInt64(nodes.count)
        return Dictionary(uniqueKeysWithValues: nodes.map { (.node($0), share) })
    }

    /// A path with single slashes and no trailing one (see `DefaultPoolMounts.normalize`).
    public static func normalize(_ path: String) -> String { DefaultPoolMounts.normalize(path) }

    /// The directory libvirt creates for a domain under cfg->memoryBackingDir (`base`, see
    /// HookHost.backingBase): `<base>/<short name>` (qemuGetMemoryBackingDomainPath), for each
    /// candidate short name.
    public static func domainDirectories(base: String, id: Int, name: String) -> [String] {
        shortNames(id: id, name: name).map { normalize(base) + "/" + $0 }
    }

    /// virDomainDefGetShortName: `<id>-<name cut to 20>`. libvirt cuts the name to 20
    /// characters when its locale can decode the name as multibyte text, and to 20 bytes
    /// when it cannot (the C locale with a non-ASCII name). Both candidates are returned,
    /// the character rule first; a byte cut that splits a character cannot be a String and
    /// is left out.
    public static func shortNames(id: Int, name: String) -> [String] {
        var names = ["\(id)-" + String(String.UnicodeScalarView(name.unicodeScalars.prefix(20)))]
        if let cut = String(validating: Array(name.utf8.prefix(20)), as: UTF8.self), !names.contains("\(id)-\(cut)") {
            names.append("\(id)-\(cut)")
        }
        return names
    }
}
