import Testing
@testable import PrezeroCore
@testable import PrezeroLibvirtModel
@testable import PrezeroQemuModel

/// A 2 MiB pool at /dev/hugepages holding memory_backing_dir, planned for `version`.
private func host(_ version: LibvirtVersion? = nil) -> HookHost {
    let m = HookHost.Mount(path: "/dev/hugepages", pageSize: 2 << 20)
    return HookHost(memoryBackingDir: "/dev/hugepages/libvirt-ram", hugetlbfs: [m], hostMounts: [m], poolMounts: [m],
                    defaultHugepageSize: 2 << 20, libvirtVersion: version)
}

private let twoCells = "<cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='1' cpus='1' memory='1' unit='GiB'/>"

@Suite("The plan follows the libvirt it is made for")
struct LibvirtVersionTests {
    @Test func versionsReadAsLibvirtWritesThem() {
        #expect(LibvirtVersion(number: 11_003_000) == LibvirtVersion(11, 3, 0))
        #expect(LibvirtVersion(number: 9_000_000)?.description == "9.0.0")
        #expect(LibvirtVersion(text: "11.3") == LibvirtVersion(11, 3, 0))
        #expect(LibvirtVersion(text: "10.10.1")?.number == 10_010_001)
        for bad in ["", "11", "11.3.0.1", "a.b", "11.-1", "11.1000", "1 1.3"] { #expect(LibvirtVersion(text: bad) == nil, "\(bad)") }
        #expect(LibvirtVersion(number: 999) == nil)
        #expect(LibvirtVersion(9, 0, 0) < LibvirtVersion(10, 10, 0) && LibvirtVersion(10, 10, 0) < LibvirtVersion(11, 3, 0))
    }

    @Test func selfversFromTheCapabilitiesCache() {
        let caps = "<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <qemuctime>1</qemuctime>\n  <selfctime>2</selfctime>\n  <selfvers>11003000</selfvers>\n"
        #expect(LibvirtVersion.cached(capsXML: caps) == LibvirtVersion(11, 3, 0))
        #expect(LibvirtVersion.cached(capsXML: "<qemuCaps><selfvers>9000000</selfvers>") == LibvirtVersion(9, 0, 0))
        for bad in ["", "<qemuCaps>", "<selfvers>abc</selfvers>", "<selfvers>11003000", "<selfvers></selfvers>", "<selfvers>12</selfvers>"] {
            #expect(LibvirtVersion.cached(capsXML: bad) == nil, "\(bad)")
        }
    }

    @Test func unknownVersionPlansByTheOldestRules() {
        #expect(host().rules == .oldest)
        #expect(host(LibvirtVersion(11, 3, 0)).rules == LibvirtVersion(11, 3, 0))
    }

    /// libvirt 10.6 added <pstore>; 9.0 ignores the element. ivshmem-plain has a backend on both.
    @Test func pstoreAndShmemAreListedAndLeftAlone() throws {
        let devices = """
            <pstore backend='acpi-erst'><path>/var/lib/libvirt/qemu/nvram/syn_PSTORE.raw</path><size unit='KiB'>8</size></pstore>
            <shmem name='shm0'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>
            <shmem name='bell'><model type='ivshmem-doorbell'/><server path='/tmp/s'/></shmem>
            <shmem name='shm2'><model type='ivshmem-plain'/><alias name='ua-x'/></shmem>
            """
        let d = try DomainXML.parse(syntheticDomain(devices: devices))
        let new = try HookPlanner.plan(d, host: host(LibvirtVersion(11, 3, 0))).backends
        // qemuBuildCommandLine's order: RAM, shmem, pstore.
        #expect(new.map(\.backend.id) == ["pc.ram", "shmmem-shmem0", "shmmem-ua-x", "mempstore0"])
        let side = new.filter { $0.backend.id != "pc.ram" }
        #expect(side.allSatisfy { $0.decision == .nothing && $0.backend.shared && $0.backend.kind == .file })
        #expect(side.first { $0.backend.id == "mempstore0" }?.backend.bytes == 8 << 10)
        #expect(side.first { $0.backend.id == "shmmem-shmem0" }?.backend.path == .deviceFile("/dev/shm/shm0"))
        #expect(side.first { $0.backend.id == "shmmem-shmem0" }?.backend.bytes == 4 << 20)
        let old = try HookPlanner.plan(d, host: host(LibvirtVersion(9, 0, 0))).backends
        #expect(!old.contains { $0.backend.id == "mempstore0" })
        #expect(old.count == new.count - 1)
    }

    @Test(arguments: [
        ("<shmem name='s'/>", "shmem s model 'ivshmem' is not ivshmem-plain or ivshmem-doorbell: libvirt refuses it"),
        ("<shmem name='s'><model type='ivshmem-plain'/><size unit='K'>512</size></shmem>", "shmem s size 524288 is not a power of 2 of at least 1 MiB: libvirt refuses it"),
        ("<pstore backend='nvram'><size>8</size></pstore>", "<pstore backend='nvram'> is not acpi-erst: libvirt refuses it"),
    ])
    func sideMemoryLibvirtRefuses(devices: String, why: String) {
        #expect(domainXMLError(syntheticDomain(devices: devices)) == DomainXMLError(description: why))
    }

    /// numad picks the nodes when the domain starts, after every hook call: never a hand-over,
    /// and room on every node.
    @Test func numadPlacementIsLeftToQEMUWithRoomOnEveryNode() throws {
        let d = try DomainXML.parse(syntheticDomain(numatune: "<numatune><memory mode='strict' placement='auto'/></numatune>", cells: twoCells))
        let plan = try HookPlanner.plan(d, host: host())
        #expect(plan.backends.allSatisfy { $0.decision == .makeRoom && $0.backend.nodesFromNumad && $0.backend.policy == "bind" })
        #expect(plan.backends.allSatisfy { $0.reason.contains("placement='auto'") && $0.reason.contains("numad") })
        #expect(plan.makeRoom() == [2 << 20: [.every: 1024]])
        // A memnode with its own nodeset is known: that cell is handed over.
        let mixed = try DomainXML.parse(syntheticDomain(
            numatune: "<numatune><memory mode='strict' placement='auto'/><memnode cellid='1' mode='strict' nodeset='0'/></numatune>", cells: twoCells))
        #expect(try HookPlanner.plan(mixed, host: host()).backends.map(\.decision) == [.makeRoom, .handOver])
    }

    /// libvirt 12.0 binds a memory device's own nodemask strictly; before, the cell's mode applies.
    @Test func deviceNodemaskIsStrictFromLibvirt12() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<memory unit='MiB'>2560</memory>",
            numatune: "<numatune><memory mode='interleave' nodeset='0'/></numatune>", cells: twoCells,
            devices: "<memory model='dimm' access='shared'><source><nodemask>0</nodemask></source><target><size unit='MiB'>512</size><node>0</node></target></memory>"))
        let policy = { (v: LibvirtVersion) in try HookPlanner.plan(d, host: host(v)).backends.first { $0.backend.id == "memdimm0" }?.backend.policy }
        #expect(try policy(LibvirtVersion(11, 3, 0)) == "interleave")
        #expect(try policy(LibvirtVersion(12, 0, 0)) == "bind")
    }

    /// From 9.2 a thread-context follows the CPUs the emulator may run on, and counts in
    /// restrictive mode too; 9.0 copies host-nodes.
    @Test func threadContextByVersion() throws {
        func tc(_ v: LibvirtVersion, numatune: String, cputune: String = "") throws -> [String?] {
            let xml = syntheticDomain(numatune: numatune + cputune, cells: twoCells)
            var h = host(v)
            h.cpuNodes = [0: 0, 1: 1]
            return try HookPlanner.plan(DomainXML.parse(xml), host: h).backends.map(\.backend.threadContext)
        }
        let strict0 = "<numatune><memory mode='strict' nodeset='0'/></numatune>"
        let pinned1 = "<cputune><emulatorpin cpuset='1'/></cputune>"
        #expect(try tc(LibvirtVersion(9, 0, 0), numatune: strict0, cputune: pinned1) == ["tc-ram-node0", "tc-ram-node1"])
        #expect(try tc(LibvirtVersion(11, 3, 0), numatune: strict0, cputune: pinned1) == [nil, nil])
        #expect(try tc(LibvirtVersion(11, 3, 0), numatune: strict0, cputune: "<cputune><emulatorpin cpuset='0-1'/></cputune>") == ["tc-ram-node0", "tc-ram-node1"])
        #expect(try tc(LibvirtVersion(11, 3, 0), numatune: strict0) == ["tc-ram-node0", "tc-ram-node1"])
        let restrictive = "<numatune><memory mode='restrictive' nodeset='0'/></numatune>"
        #expect(try tc(LibvirtVersion(9, 0, 0), numatune: restrictive) == [nil, nil])
        #expect(try tc(LibvirtVersion(11, 3, 0), numatune: restrictive) == ["tc-ram-node0", "tc-ram-node1"])
    }
}
