// libFuzzer harness: a domain's XML as libvirt's hook hands it to prezerod, through
// the parser and the planner the daemon runs at `start begin`, on a host with a 2 MiB
// and a 1 GiB pool mount (scripts/fuzz.sh links PrezeroCore).
import PrezeroCore
import PrezeroLibvirtModel

private let mounts = [HookHost.Mount(path: "/dev/hugepages", pageSize: 2 << 20),
                      HookHost.Mount(path: "/dev/hugepages1G", pageSize: 1 << 30)]
private let hosts = [
    HookHost(memoryBackingDir: "/dev/hugepages/libvirt", hugetlbfs: mounts, hostMounts: mounts,
             poolMounts: mounts, defaultHugepageSize: 2 << 20),
    HookHost(memoryBackingDir: nil, hugetlbfs: mounts, hostMounts: mounts, poolMounts: [mounts[1]],
             defaultHugepageSize: 1 << 30),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let domain: DomainMemory
    do {
        domain = try DomainXML.parse(inputText(data, size))
    } catch {
        checkMessage(error.description, from: "DomainXML.parse")
        return 0
    }
    for host in hosts {
        let plan: DomainPlan
        do {
            plan = try HookPlanner.plan(domain, host: host)
        } catch {
            checkMessage(error.description, from: "HookPlanner.plan")
            continue
        }
        for p in plan.handOvers {
            // What the hand-over relies on: a shared file in whole pages on a pool mount.
            guard p.backend.shared, p.backend.bytes > 0, p.pageSize > 0, p.backend.bytes % p.pageSize == 0,
                  host.poolMounts.contains(where: { $0.pageSize == p.pageSize }) else {
                fatalError("a hand-over the daemon cannot do: \(p)")
            }
        }
        for (pageSize, nodes) in plan.makeRoom(includingHandOvers: true) {
            let want = plan.backends.filter { $0.pageSize == pageSize && $0.decision != .nothing }
                .reduce(UInt64(0)) { $0 + ($1.backend.startBytes + pageSize - 1) / pageSize }
            guard nodes.values.reduce(0, +) >= want else {
                fatalError("make-room asks for fewer pages than the backends take: \(nodes) < \(want)")
            }
        }
    }
    return 0
}
