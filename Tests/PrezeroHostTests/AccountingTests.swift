import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

/// The hugetlb cgroup on the cgroup v2 hierarchy: two children made for one test
/// (prezerod's and a VM's), and the controller enabled for them if it was not.
/// `close()` removes the children and gives the root's subtree_control back.
struct HugetlbCgroups {
    let root: String
    let pool: String
    let vm: String
    private let enabledHere: Bool

    init(tag: String) throws {
        // The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let mounts = mountinfo.split(separator: "\n").compactMap { line -> String? in
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { return nil }
            return halves[0].split(separator: " ").dropFirst(4).first.map(String.init)
        }
        guard let root = mounts.first(where: { (try? String(contentsOfFile: $0 + "/cgroup.controllers", encoding: .utf8))?
                .split(whereSeparator: \.isWhitespace).contains("hugetlb") == true }) else {
            throw TestFailure("no cgroup2 hierarchy offers the hugetlb controller (mounts: \(mounts)); the accounting test needs one")
        }
        self.root = root
        let control = root + "/cgroup.subtree_control"
        let enabled = try String(contentsOfFile: control, encoding: .utf8).split(whereSeparator: \.isWhitespace).contains("hugetlb")
        if !enabled { try "+hugetlb".write(toFile: control, atomically: false, encoding: .utf8) }
        enabledHere = !enabled
        pool = "\(root)/prezero-test-\(tag)-pool"
        vm = "\(root)/prezero-test-\(tag)-vm"
        for d in [pool, vm] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: false) }
    }

    /// Bytes of `pageSize` pages charged to the cgroup: `hugetlb.<size>.current`.
    func current(_ cgroup: String, pageSize: UInt64) throws -> UInt64 {
        let name = pageSize >= GiB ? "\(pageSize / GiB)GB" : "\(pageSize / MiB)MB"
        let text = try String(contentsOfFile: "\(cgroup)/hugetlb.\(name).current", encoding: .utf8)
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
    }

    /// A command that moves itself into `cgroup` and then runs `args`.
    static func inside(_ cgroup: String, _ args: [String]) -> [String] {
        ["/bin/sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup] + args
    }

    /// After every process in them has exited.
    func close() {
        for d in [vm, pool] { rmdir(d) }
        if enabledHere { try? "-hugetlb".write(toFile: root + "/cgroup.subtree_control", atomically: false, encoding: .utf8) }
    }
}

extension HostTests {
    @Suite("accounting: hugetlb cgroups see prezerod's and a VM's pages", .tags(.hugePages, .qemu), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct Accounting: HostSuite {
        @Test("accounting: the hugetlb cgroup charges pool pages to prezerod's cgroup, not the VM's that maps them; prezero exports them per lease")
        func hugetlbCgroupAccounting() throws {
            let size = 8 * MiB
            let cgroups = try HugetlbCgroups(tag: "\(getpid())")
            defer { cgroups.close() }
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 8M\nfile_size: 8M")
            defer { pool.close() }
            // prezerod in its own cgroup from its first instruction, as prezero.slice holds it under systemd.
            try pool.start(wrapper: HugetlbCgroups.inside(cgroups.pool, []))
            try pool.waitClean(size)
            #expect(try cgroups.current(cgroups.pool, pageSize: page2M) == size, "the fill's pages are charged to prezerod's cgroup")

            // A VM in its own cgroup on a handed-over file: every page touched, none charged to it.
            let claim = try pool.claim(size, as: "vm.ram", lease: "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.pc.ram")
            let qmp = pool.base + "/vm.qmp"
            let vm = try Child(HugetlbCgroups.inside(cgroups.vm, preallocQEMU(memPath: claim.path, bytes: size, qmp: qmp)),
                               stderr: pool.base + "/vm.err")
            defer { vm.signal(SIGKILL); _ = try? vm.wait(timeout: 30) }
            try #require(QMP.waitReady(socket: qmp, timeout: 60) { vm.isRunning }, "QEMU: \((try? String(contentsOfFile: pool.base + "/vm.err", encoding: .utf8)) ?? "")")
            #expect(try cgroups.current(cgroups.vm, pageSize: page2M) == 0, "a handed-over file's pages are not the VM's cgroup's")
            #expect(try cgroups.current(cgroups.pool, pageSize: page2M) == size, "they stay prezerod's while the VM runs")
            // What prezero exports instead: the lease, its bytes and its VM (the domain's UUID).
            let lease = try #require(try pool.status().leases.first)
            #expect(lease == LeaseStatus(lease: "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.pc.ram", node: 0, bytes: size))
            #expect(lease.vm == "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b")
            vm.signal(SIGKILL)
            _ = try vm.wait(timeout: 30)

            // The stock start beside it: QEMU's own fresh file is charged to the VM's cgroup.
            let stockQMP = pool.base + "/stock.qmp"
            let stock = try Child(HugetlbCgroups.inside(cgroups.vm, preallocQEMU(memPath: pool.mount, bytes: size, qmp: stockQMP)),
                                  stderr: pool.base + "/stock.err")
            defer { stock.signal(SIGKILL); _ = try? stock.wait(timeout: 30) }
            try #require(QMP.waitReady(socket: stockQMP, timeout: 60) { stock.isRunning }, "stock QEMU: \((try? String(contentsOfFile: pool.base + "/stock.err", encoding: .utf8)) ?? "")")
            #expect(try cgroups.current(cgroups.vm, pageSize: page2M) == size, "a fresh file's pages are charged to the cgroup that faulted them")
            stock.signal(SIGKILL)
            _ = try stock.wait(timeout: 30)
            try waitFor("the stock file's pages to go back") { try cgroups.current(cgroups.vm, pageSize: page2M) == 0 }

            // Released, scrubbed and clean again: still prezerod's; drained: nobody's.
            _ = try pool.release(lease: lease.lease)
            try pool.waitClean(size)
            #expect(try cgroups.current(cgroups.pool, pageSize: page2M) == size)
            _ = try pool.client.drain()
            try waitFor("the drained pages to leave prezerod's cgroup") { try cgroups.current(cgroups.pool, pageSize: page2M) == 0 }
            pool.stop()
        }
    }
}

/// A QEMU with no machine that preallocates `bytes` of `memPath` (a file, or a
/// directory for a fresh one) and answers QMP once it has: all its pages are touched.
func preallocQEMU(memPath: String, bytes: UInt64, qmp: String) -> [String] {
    ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
     "-object", "memory-backend-file,id=m0,mem-path=\(memPath),size=\(bytes),share=on,prealloc=on",
     "-qmp", "unix:\(qmp),server=on,wait=off"]
}
