import ArgumentParser
import Foundation
import PrezeroClient
import PrezeroCore
import PrezeroHookHandler
import PrezeroLibvirtModel
import PrezeroLibvirt
import PrezeroHost
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

struct LibvirtPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show every memory backend libvirt will give QEMU for a domain, and what prezero does with each.",
        discussion: """
            Each backend is listed with its QOM type and id, its file or hugetlbfs directory, its size and page \
            size, its host nodes and policy, whether it is mapped shared, and the decision: hand-over (a \
            pre-zeroed pool file is linked at its path), make-room (QEMU takes huge pages itself, so the pool \
            frees them first) or nothing, with the reason. prezerod's `start begin` hook makes the same plan.

            The plan follows the rules of libvirt's version where they differ (9.0 and later): \
            --libvirt-version, else libvirtd's own (with DOMAIN), else the <selfvers> in libvirt's capabilities \
            cache, else 9.0's, and says which.

            With --xml and --qemu-conf it reads nothing else: no daemon, no libvirtd, no host file. The \
            hugetlbfs mounts are then exactly the --pool-mount and --hugetlbfs-mount ones, and the default huge \
            page size is --default-page-size (2M unless given). Otherwise the host's mounts, /proc/meminfo, \
            prezerod's pool mounts and libvirt's capabilities cache (for the machine's RAM id) are read.

            Exit status: 0 with a plan, 2 for bad input (the XML, qemu.conf or a domain libvirt would refuse), \
            3 when libvirtd cannot be reached. --json prints the stable form documented in the README ("v": 1).
            """)

    @Argument(help: "A defined domain's name or UUID (read from libvirt).")
    var domain: String?
    @Option(name: .long, help: "Read the domain XML from FILE instead of libvirt ('-' for stdin).")
    var xml: String?
    @Option(name: .long, help: "libvirt's qemu.conf.")
    var qemuConf: String?
    @Option(name: .long, help: ArgumentHelp("A pool mount and its page size, e.g. /dev/hugepages=2M. Repeatable.", valueName: "PATH=PAGESIZE"))
    var poolMount: [String] = []
    @Option(name: .long, help: ArgumentHelp("A hugetlbfs mount that holds no pool. Repeatable.", valueName: "PATH=PAGESIZE"))
    var hugetlbfsMount: [String] = []
    @Option(name: .long, help: "The kernel's default huge-page size (default: /proc/meminfo's, or 2M with --xml and --qemu-conf).")
    var defaultPageSize: String?
    @Option(name: .long, help: "The machine type's system RAM id (default: libvirt's capabilities cache, else pc.ram, mach-virt.ram, … by machine type).")
    var machineRamId: String?
    @Option(name: .long, help: "Plan by this libvirt version's rules, e.g. 11.3.0 (default: libvirtd's, else its capabilities cache's, else 9.0.0).")
    var libvirtVersion: String?
    @Flag(name: .long, help: "Print the plan as JSON.")
    var json = false
    @OptionGroup var connection: Connection

    func validate() throws {
        guard (domain == nil) != (xml == nil) else { throw ValidationError("give either DOMAIN or --xml FILE") }
    }

    func run() throws {
        try guarded {
            let pure = xml != nil && qemuConf != nil
            let pools = try poolMount.map { try Self.mount($0, flag: "--pool-mount") }
            let others = try hugetlbfsMount.map { try Self.mount($0, flag: "--hugetlbfs-mount") }
            var version = try libvirtVersion.map { s in
                guard let v = LibvirtVersion(text: s) else { throw CLIError("--libvirt-version \(s) is not a version like 11.3.0", code: 2) }
                return v
            }
            let text: String
            if let xml {
                guard let t = xml == "-" ? String(decoding: Streams.readInput(limit: 16 << 20), as: UTF8.self) as String? : Files.readText(xml) else {
                    throw CLIError("cannot read --xml \(xml)", code: 2)
                }
                text = t
            } else {
                let conn: LibvirtConnection
                do { conn = try LibvirtConnection(uri: "qemu:///system") } catch { throw CLIError("\(error)", code: 3) }
                text = try libvirtCall { () throws(LibvirtError) in try conn.xml(domain ?? "") }
                if version == nil { version = LibvirtVersion(number: try libvirtCall { () throws(LibvirtError) in try conn.libVersion() }) }
            }
            let d: DomainMemory
            do { d = try DomainXML.parse(text) } catch { throw CLIError(Self.refused("\(error)"), code: 2) }
            let defaultSize = try defaultPageSize.map { s in
                guard let v = ByteSize.parse(s), v > 0 else { throw CLIError("--default-page-size \(s) is not a size like 2M or 1G", code: 2) }
                return v
            }
            let host: HookHost
            if pure {
                let conf: QemuConf
                do { conf = try QemuConf.parse(Files.readText(qemuConf!) ?? "") } catch { throw CLIError("\(qemuConf!): \(error)", code: 2) }
                let all = pools + others
                host = HookHost(memoryBackingDir: conf.memoryBackingDir, hugetlbfs: HookHost.libvirtMounts(conf, among: all), hostMounts: all, poolMounts: pools,
                                defaultHugepageSize: defaultSize ?? (2 << 20), machineRAMId: machineRamId, libvirtVersion: version)
            } else {
                var poolMounts = pools
                if poolMounts.isEmpty, let s = try? connection.client.status() {
                    poolMounts = s.mounts.map { HookHost.Mount(path: $0.path, pageSize: $0.pageSize) }
                }
                var h: HookHost
                do {
                    h = try HostDiscovery.hookHost(qemuConf: qemuConf ?? Config().qemuConf, capabilities: Config().libvirtCapabilitiesCache, domain: d,
                                                   poolMounts: poolMounts, machineRAMId: machineRamId, libvirtVersion: version).1
                } catch {
                    throw CLIError("\(error)", code: 2)
                }
                h.hostMounts += others
                h.hugetlbfs += others
                if let defaultSize { h.defaultHugepageSize = defaultSize }
                host = h
            }
            let plan: DomainPlan
            do { plan = try HookPlanner.plan(d, host: host) } catch { throw CLIError(Self.refused("\(d.name): \(error)"), code: 2) }
            if json {
                printJSON(PlanJSON(d, plan, libvirt: host.rules))
            } else {
                print(Self.table(d, plan, libvirt: host), terminator: "")
            }
        }
    }

    /// The plan refuses only what libvirt refuses, and each refusal says so.
    static func refused(_ why: String) -> String { why.contains("libvirt") ? why : why + ": libvirt refuses it too" }

    /// `PATH=PAGESIZE`.
    static func mount(_ s: String, flag: String) throws -> HookHost.Mount {
        guard let eq = s.lastIndex(of: "="), let size = ByteSize.parse(String(s[s.index(after: eq)...])), size > 0,
              s[..<eq].hasPrefix("/") else {
            throw CLIError("\(flag) \(s): expected PATH=PAGESIZE, e.g. /dev/hugepages=2M", code: 2)
        }
        return HookHost.Mount(path: String(s[..<eq]), pageSize: size)
    }

    static func table(_ d: DomainMemory, _ plan: DomainPlan, libvirt host: HookHost) -> String {
        var out = "domain \(d.name) (\(d.uuid))\(d.machine.map { ", machine \($0)" } ?? ""), libvirt \(host.rules)\(host.libvirtVersion == nil ? " (version unknown: 9.0's rules)" : "")\n"
        var rows = [["ID", "TYPE", "DEVICE", "SIZE", "PAGES", "NODES", "SHARED", "DECISION"]]
        for p in plan.backends {
            let b = p.backend
            rows.append([b.id ?? "?", b.kind.rawValue, b.device, ByteSize.format(b.bytes), ByteSize.format(p.pageSize),
                         b.nodesFromNumad ? "numad" + (b.policy.map { " \($0)" } ?? "") : b.hostNodes.isEmpty ? "any" : b.hostNodes.map(String.init).joined(separator: ",") + (b.policy.map { " \($0)" } ?? ""),
                         b.shared ? "yes" : "no", p.decision.rawValue])
        }
        out += columns(rows, numbers: false) + "\n"
        for p in plan.backends {
            out += "\(p.backend.id ?? "?"): \(p.reason)\n"
            if let path = p.backend.path { out += "  \(path.kind == "directory" ? "directory" : "file") \(path.path)\n" }
        }
        let room = plan.makeRoom()
        if !room.isEmpty {
            out += "\nmake room: " + room.sorted { $0.key < $1.key }.flatMap { ps, nodes in
                nodes.sorted { $0.key < $1.key }.map { "\($0.value) × \(ByteSize.format(ps)) pages on \($0.key)" }
            }.joined(separator: ", ") + "\n"
        }
        return out
    }
}

/// `prezero libvirt plan --json`, version 1: a stable contract (see the README).
/// Sizes and page sizes are integers in bytes; every key is always there, `null` where it does not apply.
struct PlanJSON: Encodable {
    /// An optional written as `null` rather than left out (what synthesized Encodable does with `T?`).
    struct Nullable<T: Encodable>: Encodable {
        var value: T?
        init(_ value: T?) { self.value = value }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            if let value { try c.encode(value) } else { try c.encodeNil() }
        }
    }
    struct Domain: Encodable {
        var name: String
        /// The libvirt version whose rules made the plan.
        var libvirt: String
        var uuid: String
        var id: Nullable<Int>
        var machine: Nullable<String>
    }
    struct Backend: Encodable {
        var id: Nullable<String>
        var type: String
        var device: String
        var alias: Nullable<String>
        var path: Nullable<String>
        var pathKind: Nullable<String>
        var bytes: UInt64
        var startBytes: UInt64
        var pageSize: UInt64
        var share: Nullable<Bool>
        var shared: Bool
        var hostNodes: [Int]
        var nodesFromNumad: Bool
        var policy: Nullable<String>
        var prealloc: Bool
        var threadContext: Nullable<String>
        var decision: String
        var reason: String

        enum CodingKeys: String, CodingKey {
            case id, type, device, alias, path, bytes, share, shared, policy, prealloc, decision, reason
            case pathKind = "path_kind", startBytes = "start_bytes", pageSize = "page_size", hostNodes = "host_nodes"
            case nodesFromNumad = "nodes_from_numad"
            case threadContext = "thread_context"
        }
    }
    struct Room: Encodable {
        var pageSize: UInt64
        /// null: any node.
        var node: Nullable<Int>
        /// Each node the pool serves (memory numad places at start).
        var everyNode: Bool
        var pages: UInt64
        enum CodingKeys: String, CodingKey { case pageSize = "page_size", node, pages, everyNode = "every_node" }
    }

    var v = 1
    var domain: Domain
    var backends: [Backend]
    var makeRoom: [Room]

    enum CodingKeys: String, CodingKey { case v, domain, backends, makeRoom = "make_room" }

    init(_ d: DomainMemory, _ plan: DomainPlan, libvirt: LibvirtVersion) {
        domain = Domain(name: d.name, libvirt: libvirt.description, uuid: d.uuid, id: Nullable(d.id), machine: Nullable(d.machine))
        backends = plan.backends.map { p in
            let b = p.backend
            return Backend(id: Nullable(b.id), type: b.kind.rawValue, device: b.device, alias: Nullable(b.alias), path: Nullable(b.path?.path),
                           pathKind: Nullable(b.path?.kind), bytes: b.bytes, startBytes: b.startBytes, pageSize: p.pageSize,
                           share: Nullable(b.share), shared: b.shared, hostNodes: b.hostNodes, nodesFromNumad: b.nodesFromNumad, policy: Nullable(b.policy),
                           prealloc: b.prealloc, threadContext: Nullable(b.threadContext), decision: p.decision.rawValue, reason: p.reason)
        }
        makeRoom = plan.makeRoom().sorted { $0.key < $1.key }.flatMap { ps, nodes in
            nodes.sorted { $0.key < $1.key }.map { Room(pageSize: ps, node: Nullable($0.key.node), everyNode: $0.key == .every, pages: $0.value) }
        }
    }
}
