import ArgumentParser
import Foundation
import PrezeroMetrics
import PrezeroClient
import PrezeroCore
import PrezeroHost
import PrezeroProtocol
import PrezeroSys

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the host and prezerod: hugetlbfs mounts, reserved pages per node, the daemon, the pool directories.")

    @OptionGroup var connection: Connection
    @Flag(name: .long, help: "Print the checks as JSON.")
    var json = false

    struct Check: Codable {
        var name: String
        var ok: Bool
        var detail: String
    }

    func run() throws {
        var checks: [Check] = []
        let mounts = HostDiscovery.hugetlbfsMounts()
        checks.append(Check(name: "hugetlbfs mounts", ok: !mounts.isEmpty,
                            detail: mounts.isEmpty ? "none; mount one: mount -t hugetlbfs -o pagesize=2M none /dev/hugepages"
                                : mounts.map { "\($0.path) (\($0.pageSizeOption.map(ByteSize.format) ?? "default size"))" }.joined(separator: ", ")))
        let sizes = HugePageCounters.supportedPageSizes()
        var anyReserved = false
        for ps in sizes {
            let host = HugePageCounters.host(pageSize: ps)
            anyReserved = anyReserved || (host?.total ?? 0) > 0
            let perNode = Numa.memoryNodes().map { n in "node \(n): \(HugePageCounters.node(n, pageSize: ps).map { "\($0.free)/\($0.total) free" } ?? "n/a")" }
            checks.append(Check(name: "\(ByteSize.format(ps)) pages", ok: true,
                                detail: "\(host?.total ?? 0) reserved; " + perNode.joined(separator: ", ")))
        }
        if !anyReserved {
            checks.append(Check(name: "reserved huge pages", ok: false,
                                detail: "no huge pages are reserved; reserve some: echo 1024 > /proc/sys/vm/nr_hugepages (1 GiB pages first, at boot if possible)"))
        }
        do {
            let s = try connection.client.status()
            checks.append(Check(name: "prezerod", ok: true, detail: "pid \(s.pid) on \(connection.socket)"))
            for m in s.mounts {
                let st = try? Files.status(Files.openDirectory(path: m.poolDir))
                let rootOnly = st.map { $0.uid == 0 && $0.permissions == 0o700 } ?? false
                checks.append(Check(name: "pool \(m.poolDir)", ok: rootOnly && m.quarantined == 0,
                                    detail: !rootOnly ? "not a root-only (0700) directory; restart prezerod to repair it"
                                        : m.quarantined > 0 ? "\(m.quarantined) quarantined file(s) in \(m.poolDir)/quarantine: inspect them, then delete them to give their pages back"
                                        : "root-only, nothing quarantined"))
                for n in m.nodes where n.totalBytes == 0 {
                    checks.append(Check(name: "node \(n.node) on \(m.path)", ok: false,
                                        detail: "no \(ByteSize.format(m.pageSize)) pages reserved on node \(n.node); its pool stays empty: echo N > /sys/devices/system/node/node\(n.node)/hugepages/hugepages-\(m.pageSize / 1024)kB/nr_hugepages"))
                }
            }
        } catch {
            checks.append(Check(name: "prezerod", ok: false, detail: error.message))
        }
        try Doctor.report(checks, json: json)
    }

    /// Prints the checks, one line each or as JSON; any failure exits 4.
    static func report(_ checks: [Check], json: Bool) throws {
        if json {
            printJSON(checks)
        } else {
            for c in checks { print("\(c.ok ? "ok  " : "FAIL") \(c.name): \(c.detail)") }
        }
        if checks.contains(where: { !$0.ok }) { throw ExitCode(4) }
    }
}
