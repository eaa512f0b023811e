import ArgumentParser
import Foundation
import PrezeroCore
import PrezeroProtocol

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each pool mount and node: pages; clean, leased, filling and held bytes; rates and claim outcomes.")

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
