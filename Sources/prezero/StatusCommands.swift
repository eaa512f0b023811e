import ArgumentParser
import Foundation
import PrezeroCore
import PrezeroProtocol

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each pool mount and node: pages, clean/dirty/leased bytes, rates and claim outcomes.")

    @OptionGroup var connection: Connection
    @Flag(name: .long, help: "Print the daemon's status as JSON.")
    var json = false

    func run() throws {
        try guarded {
            let s = try connection.status()
            if json { printJSON(s) } else { print(StatusTable.render(s)) }
        }
    }
}

enum StatusTable {
    static func render(_ s: StatusResult) -> String {
        var out = "prezerod pid \(s.pid)\n"
        for m in s.mounts {
            out += "\n\(m.path)  \(ByteSize.format(m.pageSize)) pages  pool \(m.poolDir)"
            out += m.quarantined > 0 ? "  \(m.quarantined) QUARANTINED (see prezero doctor)\n" : "\n"
            let head = ["node", "total", "free", "target", "clean", "leased", "held", "fill/s", "recycled", "hit", "trunc", "partial", "miss"]
            var rows = [head]
            for n in m.nodes {
                let o = n.outcomes
                rows.append([
                    "\(n.node)", ByteSize.format(n.totalBytes), ByteSize.format(n.freeBytes), ByteSize.format(n.targetBytes),
                    ByteSize.format(n.cleanBytes), ByteSize.format(n.leasedBytes), ByteSize.format(n.heldBytes),
                    ByteSize.format(UInt64(n.fillRate)), ByteSize.format(n.recycledBytes),
                ] + ClaimOutcome.allCases.map { "\(o[$0] ?? 0)" })
            }
            out += columns(rows, numbers: true)
            if !m.leases.isEmpty {
                out += "\n" + columns([["lease", "vm", "node", "bytes"]]
                    + m.leases.map { [$0.lease, $0.vm, "\($0.node)", ByteSize.format($0.bytes)] }, numbers: false)
            }
            if !m.held.isEmpty {
                out += "\nheld outside the pool (pinned after release; not free, never reused):\n" + columns([["lease", "node", "bytes"]]
                    + m.held.map { [$0.lease, "\($0.node)", ByteSize.format($0.bytes)] }, numbers: false)
            }
            for o in m.outsideNames {
                out += "\nlease \(o.lease) was taken back with \(o.extraLinks) name(s) outside the pool: "
                    + (o.names.isEmpty ? "not found on the mount" : o.names.joined(separator: ", ")) + "\n"
            }
        }
        return out
    }
}

struct Claim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Claim a pre-zeroed file and link it at a destination path.",
        discussion: "Outcomes: hit (exact size), truncated (cut from a larger file), partial (extended at claim time), miss (nothing handed out; the daemon made room instead).")

    @OptionGroup var connection: Connection
    @Option(name: .long, help: "Size of the file, a multiple of the page size (e.g. 2G).")
    var size: Size
    @Option(name: .long, help: "Where to link the file: on the pool mount, inside an allowed directory, not existing yet.")
    var dest: String
    @Option(name: .long, help: "Allowed host node(s), e.g. 0 or 2,3; repeatable. Default: any node.")
    var node: [NodeList] = []
    @Option(name: .long, help: "Page size of the pool to claim from: 2M or 1G. Default: the first pool mount.")
    var pageSize: PageSize?
    @Option(name: .long, help: "Owner of the file as numeric UID:GID (root's choice: any other caller's file is always its own).")
    var owner: Owner = .root
    @Option(name: .long, help: "Mode of the file, octal, at most 777 (at most 600 for a caller other than root).")
    var mode = FileMode(bits: 0o600)
    @Option(name: .long, help: "Lease key (letters, digits, - _ . : @). Default: the daemon picks one.")
    var lease: String?
    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let req = ClaimRequest(bytes: size.bytes, pageSize: pageSize?.bytes, nodes: node.flatMap(\.nodes),
                               dest: dest, uid: owner.uid, gid: owner.gid, mode: mode.bits, lease: lease)
        try guarded {
            let r = try connection.claim(req)
            if json {
                printJSON(r)
            } else if r.outcome == .miss {
                print("miss: no clean file for \(ByteSize.format(r.bytes)); nothing was linked at \(dest) (room was made for a fresh allocation)")
            } else {
                print("\(r.outcome.rawValue): \(r.path) (\(ByteSize.format(r.bytes)), node \(r.node ?? -1), lease \(r.lease ?? ""))")
            }
        }
    }
}

struct Release: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Release a claimed file: it is unlinked from its destination, and taken back (its pages to the kernel) once nothing has it open.")

    @OptionGroup var connection: Connection
    @Option(name: .long, help: "The destination path the file was claimed at.")
    var dest: String?
    @Option(name: .long, help: "The lease key the claim returned.")
    var lease: String?
    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (dest == nil) != (lease == nil) else { throw ValidationError("give exactly one of --dest or --lease") }
    }

    func run() throws {
        try guarded {
            let r = try connection.release(ReleaseRequest(lease: lease, dest: dest))
            if json {
                printJSON(r)
            } else {
                print(r.reclaimed ? "released \(r.lease): taken back, its pages returned to the kernel"
                                  : "released \(r.lease): still open or mapped somewhere; it will be taken back once that ends")
            }
        }
    }
}
