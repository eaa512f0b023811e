import Foundation
@testable import PrezeroQemuModel
import Testing
@testable import PrezeroCore
@testable import PrezeroLibvirtModel

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func mount(_ p: String, _ s: UInt64) -> HookHost.Mount { HookHost.Mount(path: p, pageSize: s) }

/// A host with a 2 MiB pool at /dev/hugepages, a 1 GiB mount at /mnt/huge1g (a pool too when
/// `pool1G`), memory_backing_dir as given.
private func host(dir: String? = "/dev/hugepages/libvirt-ram", pool1G: Bool = false, extraPools: [HookHost.Mount] = [],
                  defaultPageSize: UInt64 = 2 * MiB, ramId: String? = nil) -> HookHost {
    let mounts = [mount("/dev/hugepages", 2 * MiB), mount("/mnt/huge1g", 1 * GiB)]
    return HookHost(memoryBackingDir: dir, hugetlbfs: mounts, hostMounts: mounts,
                    poolMounts: [mounts[0]] + (pool1G ? [mounts[1]] : []) + extraPools, defaultHugepageSize: defaultPageSize,
                    machineRAMId: ramId)
}

/// One backend as the table states it: id, QOM type, where its path points, decision, page size, nodes.
private struct Row: Equatable, CustomStringConvertible {
    var id: String
    var kind: MemoryBackend.Kind
    var path: String?
    var decision: BackendDecision
    var pageSize: UInt64
    var nodes: [Int] = []
    var description: String { "\(id) \(kind.rawValue) \(path ?? "-") \(decision.rawValue) \(pageSize) \(nodes)" }
}

private func rows(_ xml: String, _ h: HookHost = host()) throws -> [Row] {
    try HookPlanner.plan(DomainXML.parse(xml), host: h).backends.map {
        Row(id: $0.backend.id ?? "?", kind: $0.backend.kind, path: $0.backend.path?.path, decision: $0.decision, pageSize: $0.pageSize, nodes: $0.backend.hostNodes)
    }
}

private let dir = "/dev/hugepages/libvirt-ram/libvirt/qemu/5-syn"
private let hp2 = "/dev/hugepages/libvirt/qemu/5-syn"
private let hp1g = "/mnt/huge1g/libvirt/qemu/5-syn"
private let twoCells = "<cell id='0' cpus='0' memory='1048576' unit='KiB'/><cell id='1' cpus='1' memory='1048576' unit='KiB'/>"
private func backing(_ inner: String) -> String { "<memoryBacking>\(inner)</memoryBacking>" }

/// One row per rule of LibvirtBackends and HookPlanner, each read from libvirt 9.0's
/// qemuBuildMemoryBackendProps and its helpers (and checked against `virsh domxml-to-native`
/// by the host test LibvirtPlanArgvTests).
@Suite("HookPlanner.plan: libvirt 9.0 memory shapes")
struct DomainShapeTests {
    @Test func fileSharedSystemRAMIsHandedOver() throws {
        #expect(try rows(syntheticDomain()) == [Row(id: "pc.ram", kind: .file, path: "\(dir)/pc.ram", decision: .handOver, pageSize: 2 * MiB)])
    }

    @Test func noBackingIsOrdinaryRAM() throws {
        #expect(try rows(syntheticDomain(backing: "")) == [Row(id: "pc.ram", kind: .ram, path: nil, decision: .nothing, pageSize: 4096)])
    }

    /// An access mode alone makes memory file-backed (the `memAccess ||` branch).
    @Test(arguments: ["<access mode='shared'/>", "<access mode='private'/>"])
    func anAccessModeAloneIsFileBacked(access: String) throws {
        let r = try rows(syntheticDomain(backing: backing(access)))
        #expect(r.map(\.kind) == [.file])
        #expect(r.map(\.path) == ["\(dir)/pc.ram"])
        #expect(r.map(\.decision) == [access.contains("shared") ? .handOver : .makeRoom])
    }

    /// vhost-user guests: a shared cell with no <source>, beside a private and a plain one.
    @Test func vhostUserCellsNeedNoSource() throws {
        let cells = "<cell id='0' cpus='0' memory='1048576' unit='KiB' memAccess='shared'/><cell id='1' cpus='1' memory='1048576' unit='KiB' memAccess='private'/><cell id='2' cpus='1' memory='1048576' unit='KiB'/>"
        #expect(try rows(syntheticDomain(memory: "<memory unit='KiB'>3145728</memory>", backing: "", cells: cells)) == [
            Row(id: "ram-node0", kind: .file, path: "\(dir)/ram-node0", decision: .handOver, pageSize: 2 * MiB),
            Row(id: "ram-node1", kind: .file, path: "\(dir)/ram-node1", decision: .makeRoom, pageSize: 2 * MiB),
            Row(id: "ram-node2", kind: .ram, path: nil, decision: .nothing, pageSize: 4096),
        ])
    }

    @Test func perNodePageSizes() throws {
        let cells = (0..<4).map { "<cell id='\($0)' cpus='\($0 % 2)' memory='1048576' unit='KiB'/>" }.joined()
        let r = try rows(syntheticDomain(
            memory: "<memory unit='KiB'>4194304</memory>",
            backing: backing("<hugepages><page size='2048' nodeset='1'/><page size='1048576' nodeset='0,2-3'/></hugepages><source type='file'/>"),
            cells: cells))
        #expect(r == [
            Row(id: "ram-node0", kind: .file, path: hp1g, decision: .makeRoom, pageSize: 1 * GiB),
            Row(id: "ram-node1", kind: .file, path: hp2, decision: .makeRoom, pageSize: 2 * MiB),
            Row(id: "ram-node2", kind: .file, path: hp1g, decision: .makeRoom, pageSize: 1 * GiB),
            Row(id: "ram-node3", kind: .file, path: hp1g, decision: .makeRoom, pageSize: 1 * GiB),
        ])
        let plan = try HookPlanner.plan(DomainXML.parse(syntheticDomain(memory: "<memory unit='KiB'>4194304</memory>",
            backing: backing("<hugepages><page size='2048' nodeset='1'/><page size='1048576' nodeset='0,2-3'/></hugepages>"), cells: cells)), host: host())
        #expect(plan.makeRoom() == [1 * GiB: [.any: 3], 2 * MiB: [.any: 512]])
    }

    /// A cell with no <page> of its own and no page without a nodeset takes no huge pages.
    @Test func pageForSomeCellsOnly() throws {
        #expect(try rows(syntheticDomain(backing: backing("<hugepages><page size='2048' nodeset='1'/></hugepages>"), cells: twoCells)) == [
            Row(id: "ram-node0", kind: .ram, path: nil, decision: .nothing, pageSize: 4096),
            Row(id: "ram-node1", kind: .file, path: hp2, decision: .makeRoom, pageSize: 2 * MiB),
        ])
    }

    /// …but with a <source type='file'/> that cell is a file under memory_backing_dir.
    @Test func pageForSomeCellsOnlyWithAFileSource() throws {
        #expect(try rows(syntheticDomain(backing: backing("<hugepages><page size='1' unit='GiB' nodeset='1'/></hugepages><source type='file'/><access mode='shared'/>"), cells: twoCells)) == [
            Row(id: "ram-node0", kind: .file, path: "\(dir)/ram-node0", decision: .handOver, pageSize: 2 * MiB),
            Row(id: "ram-node1", kind: .file, path: hp1g, decision: .makeRoom, pageSize: 1 * GiB),
        ])
    }

    /// A page without a nodeset applies to the cells no other page names.
    @Test func aPageWithoutANodesetIsTheDefault() throws {
        #expect(try rows(syntheticDomain(backing: backing("<hugepages><page size='1048576'/><page size='2048' nodeset='0'/></hugepages>"), cells: twoCells)).map(\.pageSize)
            == [2 * MiB, 1 * GiB])
    }

    /// The system page size is no huge page at all.
    @Test func aPageOfTheSystemSizeIsOrdinaryMemory() throws {
        #expect(try rows(syntheticDomain(backing: backing("<hugepages><page size='4' unit='KiB'/></hugepages>")))
            == [Row(id: "pc.ram", kind: .ram, path: nil, decision: .nothing, pageSize: 4096)])
        #expect(try rows(syntheticDomain(backing: backing("<hugepages><page size='4' unit='KiB'/></hugepages><source type='file'/><access mode='shared'/>")))
            == [Row(id: "pc.ram", kind: .file, path: "\(dir)/pc.ram", decision: .handOver, pageSize: 2 * MiB)])
    }

    /// qemuBuildMemoryGetDefaultPagesize: the mount of the kernel's default size, else the first mount.
    @Test func hugepagesWithoutASizeTakeTheDefault() throws {
        #expect(try rows(syntheticDomain(backing: backing("<hugepages/>"))) == [Row(id: "pc.ram", kind: .file, path: hp2, decision: .makeRoom, pageSize: 2 * MiB)])
        #expect(try rows(syntheticDomain(backing: backing("<hugepages/>")), host(defaultPageSize: 1 * GiB)).map(\.pageSize) == [1 * GiB])
        #expect(try rows(syntheticDomain(backing: backing("<hugepages/>")), host(defaultPageSize: 16 * MiB)).map(\.pageSize) == [2 * MiB])
    }

    @Test func memfdIsMadeRoomForOnlyWithHugepages() throws {
        #expect(try rows(syntheticDomain(backing: backing("<source type='memfd'/><access mode='shared'/><hugepages/>"))) == [Row(id: "pc.ram", kind: .memfd, path: nil, decision: .makeRoom, pageSize: 2 * MiB)])
        #expect(try rows(syntheticDomain(backing: backing("<source type='memfd'/><access mode='shared'/>"))) == [Row(id: "pc.ram", kind: .memfd, path: nil, decision: .nothing, pageSize: 4096)])
    }

    @Test func anonymousSourceIsOrdinaryRAM() throws {
        #expect(try rows(syntheticDomain(backing: backing("<source type='anonymous'/>"))).map(\.kind) == [.ram])
    }

    /// A DIMM follows its cell's access mode, has its own page size or the domain's, and its file is its alias.
    @Test func coldPluggedDIMMs() throws {
        let dimm = { (alias: String, node: Int, src: String) in
            "<memory model='dimm'>\(src)<target><size unit='MiB'>512</size><node>\(node)</node></target><alias name='\(alias)'/></memory>"
        }
        let r = try rows(syntheticDomain(
            memory: "<maxMemory slots='4' unit='GiB'>8</maxMemory><memory unit='KiB'>3145728</memory>",
            backing: backing("<source type='file'/><access mode='shared'/>"),
            numatune: "<numatune><memnode cellid='1' mode='strict' nodeset='1'/></numatune>", cells: twoCells,
            devices: dimm("dimm0", 1, "") + dimm("dimm1", 0, "<source><pagesize unit='KiB'>1048576</pagesize><nodemask>0</nodemask></source>")))
        #expect(r == [
            Row(id: "ram-node0", kind: .file, path: "\(dir)/ram-node0", decision: .handOver, pageSize: 2 * MiB),
            Row(id: "ram-node1", kind: .file, path: "\(dir)/ram-node1", decision: .handOver, pageSize: 2 * MiB, nodes: [1]),
            Row(id: "memdimm0", kind: .file, path: "\(dir)/dimm0", decision: .handOver, pageSize: 2 * MiB, nodes: [1]),
            Row(id: "memdimm1", kind: .file, path: hp1g, decision: .makeRoom, pageSize: 1 * GiB, nodes: [0]),
        ])
    }

    /// Without an <alias> (a defined domain), aliases are numbered per model in order.
    @Test func devicesWithoutAliasesAreNumbered() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<maxMemory slots='4' unit='GiB'>8</maxMemory><memory unit='KiB'>3145728</memory>", cells: twoCells,
            devices: String(repeating: "<memory model='dimm'><target><size unit='MiB'>512</size><node>0</node></target></memory>", count: 2)))
        #expect(try HookPlanner.plan(d, host: host()).backends.map(\.backend.alias) == ["ram-node0", "ram-node1", "dimm0", "dimm1"])
    }

    /// qemuDeviceMemoryGetAliasID: DIMMs and NVDIMMs are named after their slot (the lowest free
    /// one, or their <address type='dimm' slot>), the others per model. Checked against libvirtd
    /// by LibvirtPlanArgvTests, which first caught `nvdimm0` where libvirt says `nvdimm2`.
    @Test func dimmAndNvdimmAliasesAreTheirSlots() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<maxMemory slots='8' unit='GiB'>16</maxMemory><memory unit='KiB'>4194304</memory>", cells: twoCells,
            devices: """
                <memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target></memory>
                <memory model='virtio-mem'><target><size unit='MiB'>256</size><node>0</node><requested unit='MiB'>0</requested></target></memory>
                <memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target><address type='dimm' slot='1'/></memory>
                <memory model='nvdimm'><source><path>/var/lib/nv</path></source><target><size unit='MiB'>256</size><node>0</node></target></memory>
                <memory model='virtio-mem'><target><size unit='MiB'>256</size><node>0</node><requested unit='MiB'>0</requested></target></memory>
                """))
        #expect(d.devices.map(\.alias) == ["dimm0", "virtiomem0", "dimm1", "nvdimm2", "virtiomem1"])
    }

    @Test func nvdimmVirtioPmemVirtioMemAndEPC() throws {
        let r = try rows(syntheticDomain(
            memory: "<maxMemory slots='4' unit='GiB'>8</maxMemory><memory unit='KiB'>4259840</memory>", cells: twoCells,
            devices: """
                <memory model='nvdimm'><source><path>/var/lib/nv0</path></source><target><size unit='MiB'>512</size><node>0</node></target></memory>
                <memory model='virtio-pmem'><source><path>/var/lib/pm0</path></source><target><size unit='MiB'>512</size></target></memory>
                <memory model='virtio-mem'><target><size unit='GiB'>1</size><node>0</node><block unit='KiB'>2048</block><requested unit='MiB'>512</requested></target></memory>
                <memory model='sgx-epc'><target><size unit='MiB'>64</size></target></memory>
                """))
        #expect(r.dropFirst(2).map { [$0.id, $0.kind.rawValue, $0.path ?? "-", $0.decision.rawValue] } == [
            ["memnvdimm0", "memory-backend-file", "/var/lib/nv0", "nothing"],
            ["memvirtiopmem0", "memory-backend-file", "/var/lib/pm0", "nothing"],
            ["memvirtiomem0", "memory-backend-file", "\(dir)/virtiomem0", "make-room"],
            ["memepc0", "memory-backend-epc", "-", "nothing"],
        ])
        // virtio-mem is made room for at its requested size: what the guest gets at start.
        let plan = try HookPlanner.plan(DomainXML.parse(syntheticDomain(
            memory: "<maxMemory slots='4' unit='GiB'>8</maxMemory><memory unit='KiB'>3145728</memory>", cells: twoCells,
            devices: "<memory model='virtio-mem'><target><size unit='GiB'>1</size><node>0</node><requested unit='MiB'>512</requested></target></memory>")), host: host())
        #expect(plan.makeRoom() == [2 * MiB: [.any: 256]])
    }

    /// The system RAM id: the one given (libvirt's capabilities cache), else the machine type's.
    @Test(arguments: [
        ("x86_64", "pc-i440fx-7.2", "pc.ram"), ("x86_64", "pc-q35-7.2", "pc.ram"), ("aarch64", "virt-7.2", "mach-virt.ram"),
        ("ppc64le", "pseries-7.2", "ppc_spapr.ram"), ("s390x", "s390-ccw-virtio-7.2", "s390.ram"),
    ])
    func systemRAMIdByMachineType(arch: String, machine: String, id: String) throws {
        let xml = syntheticDomain().replacingOccurrences(of: "arch='x86_64' machine='pc-i440fx-7.2'", with: "arch='\(arch)' machine='\(machine)'")
        #expect(try rows(xml).map(\.id) == [id])
        #expect(try rows(xml).map(\.path) == ["\(dir)/\(id)"])
        #expect(try rows(xml, host(ramId: "custom.ram")).map(\.id) == ["custom.ram"])
    }

    /// A machine type whose RAM id prezero cannot know: the backend is listed without an id and left
    /// alone, instead of the whole domain being refused; a given id plans it as usual.
    @Test(arguments: [("mips64el", "malta"), ("armv7l", "vexpress-a15"), ("armv7l", "versatilepb"), ("ppc64", "mac99"),
                      ("ppc", "g3beige"), ("ppc64le", "powernv9"), ("loongarch64", "virt"), ("ppc", "ppce500"), ("sparc", "SS-5")])
    func anUnknownMachineTypeIsListedAndLeftAlone(arch: String, machine: String) throws {
        let xml = syntheticDomain().replacingOccurrences(of: "arch='x86_64' machine='pc-i440fx-7.2'", with: "arch='\(arch)' machine='\(machine)'")
        let plan = try HookPlanner.plan(DomainXML.parse(xml), host: host())
        #expect(plan.backends.count == 1)
        #expect(plan.backends[0].backend.id == nil && plan.backends[0].backend.alias == nil)
        #expect(plan.backends[0].decision == .nothing)
        #expect(plan.backends[0].reason.contains("RAM id prezero cannot know"))
        #expect(try rows(xml, host(ramId: "some.ram")).map(\.id) == ["some.ram"])
    }

    @Test func numatuneNodesModesAndThreadContext() throws {
        let d = try DomainXML.parse(syntheticDomain(
            numatune: "<numatune><memory mode='interleave' nodeset='0-1'/><memnode cellid='1' mode='preferred' nodeset='1'/></numatune>", cells: twoCells))
        let b = try HookPlanner.plan(d, host: host()).backends.map(\.backend)
        #expect(b.map(\.hostNodes) == [[0, 1], [1]])
        #expect(b.map(\.policy) == ["interleave", "preferred"])
        #expect(b.map(\.threadContext) == ["tc-ram-node0", "tc-ram-node1"])
        let strict = try HookPlanner.plan(DomainXML.parse(syntheticDomain(numatune: "<numatune><memory mode='strict' nodeset='0'/></numatune>")), host: host())
        #expect(strict.backends.map(\.backend.policy) == ["bind"])
        let restrictive = try HookPlanner.plan(DomainXML.parse(syntheticDomain(numatune: "<numatune><memory mode='restrictive' nodeset='0'/></numatune>")), host: host())
        #expect(restrictive.backends.map(\.backend.threadContext) == [nil])
        // No immediate allocation and no huge pages: no prealloc, so no thread-context.
        let lazy = try HookPlanner.plan(DomainXML.parse(syntheticDomain(backing: backing("<source type='file'/><access mode='shared'/>"),
                                                                        numatune: "<numatune><memory mode='strict' nodeset='0'/></numatune>")), host: host())
        #expect(lazy.backends.map(\.backend.prealloc) == [false])
        #expect(lazy.backends.map(\.backend.threadContext) == [nil])
    }

    @Test func handOverNeedsAPoolMountOfWholePages() throws {
        // memory_backing_dir on the 1 GiB mount: a pool there hands over, none makes room.
        #expect(try rows(syntheticDomain(), host(dir: "/mnt/huge1g/ram", pool1G: true)).map(\.decision) == [.handOver])
        #expect(try rows(syntheticDomain(), host(dir: "/mnt/huge1g/ram")).map(\.decision) == [.makeRoom])
        #expect(try rows(syntheticDomain(memory: "<memory unit='MiB'>1536</memory>"), host(dir: "/mnt/huge1g/ram", pool1G: true)).map(\.decision) == [.makeRoom])
        // Not on hugetlbfs at all (libvirt's default directory, or no mount): ordinary memory.
        #expect(try rows(syntheticDomain(), host(dir: nil)) == [Row(id: "pc.ram", kind: .file, path: "/var/lib/libvirt/qemu/ram/5-syn/pc.ram", decision: .nothing, pageSize: 4096)])
        #expect(try rows(syntheticDomain(), host(dir: "/srv/ram")).map(\.decision) == [.nothing])
        // The mount itself as memory_backing_dir.
        #expect(try rows(syntheticDomain(), host(dir: "/dev/hugepages")).map(\.path) == ["/dev/hugepages/libvirt/qemu/5-syn/pc.ram"])
    }

    @Test func oneDomainMixesAllThreeDecisions() throws {
        let cells = "<cell id='0' cpus='0' memory='1048576' unit='KiB' memAccess='shared'/><cell id='1' cpus='1' memory='1048576' unit='KiB'/><cell id='2' cpus='1' memory='1048576' unit='KiB'/>"
        let plan = try HookPlanner.plan(DomainXML.parse(syntheticDomain(
            memory: "<memory unit='KiB'>3145728</memory>", backing: backing("<hugepages><page size='1' unit='GiB' nodeset='1'/></hugepages>"),
            numatune: "<numatune><memnode cellid='1' mode='strict' nodeset='0'/></numatune>", cells: cells)), host: host())
        #expect(plan.backends.map(\.decision) == [.handOver, .makeRoom, .nothing])
        #expect(plan.makeRoom() == [1 * GiB: [.node(0): 1]])
        #expect(plan.makeRoom(includingHandOvers: true) == [1 * GiB: [.node(0): 1], 2 * MiB: [.any: 512]])
    }

    @Test func pagesPerNodeSharesBoundPagesRoundingUp() {
        #expect(HookPlanner.pagesPerNode(bytes: 3 * MiB, nodes: [], pageSize: 2 * MiB) == [.any: 2])
        #expect(HookPlanner.pagesPerNode(bytes: 5 * 2 * MiB, nodes: [0, 1], pageSize: 2 * MiB) == [.node(0): 3, .node(1): 3])
        #expect(HookPlanner.pagesPerNode(bytes: 0, nodes: [0], pageSize: 2 * MiB).isEmpty)
        #expect(HookPlanner.pagesPerNode(bytes: 1, nodes: [0], pageSize: 0).isEmpty)
    }
}

@Suite("HookPlanner.plan: the libvirt 9.0 hook fixtures")
struct HookFixturePlanTests {
    @Test(arguments: [("h1", "pc.ram", [Int]()), ("h2", "ram-node0", []), ("n1", "ram-node0", [0]), ("e8file", "pc.ram", [])])
    func eligibleFixturesAreHandedOver(name: String, id: String, nodes: [Int]) throws {
        let plan = try HookPlanner.plan(LibvirtFixtures.startBegin(name), host: host())
        #expect(plan.backends.map(\.backend.id) == [id])
        #expect(plan.backends.map(\.decision) == [.handOver])
        #expect(plan.backends.map(\.backend.hostNodes) == [nodes])
    }

    @Test func p1IsPrivateSoRoomIsMade() throws {
        let plan = try HookPlanner.plan(LibvirtFixtures.startBegin("p1"), host: host())
        #expect(plan.backends.map(\.decision) == [.makeRoom])
        #expect(plan.backends[0].reason.contains("private"))
        #expect(plan.makeRoom() == [2 * MiB: [.any: 1024]])
    }

    @Test func k1IsOrdinaryMemory() throws {
        let plan = try HookPlanner.plan(LibvirtFixtures.startBegin("k1"), host: host())
        #expect(plan.backends.map(\.decision) == [.nothing])
        #expect(plan.makeRoom().isEmpty)
    }
}

@Suite("HookPlanner.plan: bad input is an error, never a wrong plan")
struct PlanBadInputTests {
    @Test func aPageLargerThanAnyMount() throws {
        let d = try DomainXML.parse(syntheticDomain(backing: backing("<hugepages><page size='16' unit='GiB'/></hugepages>")))
        #expect { try HookPlanner.plan(d, host: host()) } throws: { ($0 as? PlanError)?.description.contains("no hugetlbfs mount") == true }
    }

    @Test func hugepagesWithNoMountAtAll() throws {
        let d = try DomainXML.parse(syntheticDomain(backing: backing("<hugepages/>")))
        let h = HookHost(memoryBackingDir: nil, hugetlbfs: [], hostMounts: [], poolMounts: [], defaultHugepageSize: 2 * MiB)
        #expect(throws: PlanError.self) { try HookPlanner.plan(d, host: h) }
    }

    @Test func unknownMemoryModel() {
        #expect(domainXMLError(syntheticDomain(devices: "<memory model='cxl'><target><size unit='MiB'>512</size></target></memory>"))?
            .description.contains("unknown") == true)
    }

    @Test func devicesThatOverflow() throws {
        let big = "<memory model='dimm'><target><size unit='b'>4611686018427387904</size><node>0</node></target></memory>"
        let d = try DomainXML.parse(syntheticDomain(memory: "<memory unit='b'>4611686018427387904</memory>", cells: twoCells,
                                                    devices: String(repeating: big, count: 5)))
        #expect(throws: PlanError.self) { try HookPlanner.plan(d, host: host()) }
    }

    @Test func cellsThatOverflowDoNotTrap() throws {
        let cells = "<cell id='0' cpus='0' memory='4611686018427387904' unit='b'/>"
        let d = try DomainXML.parse(syntheticDomain(cells: String(repeating: cells, count: 1)))
        _ = try HookPlanner.plan(d, host: host())
        let many = (0..<5).map { "<cell id='\($0)' cpus='0' memory='4611686018427387904' unit='b'/>" }.joined()
        #expect(throws: PlanError.self) { try HookPlanner.plan(DomainXML.parse(syntheticDomain(cells: many)), host: host()) }
    }

    /// virDomainNumaDefParseXML places each cell by its id: any order, each of 0 … n-1 once.
    @Test func outOfOrderCellIds() throws {
        let d = try DomainXML.parse(syntheticDomain(cells: "<cell id='1' cpus='0' memory='1' unit='GiB'/><cell id='0' cpus='1' memory='2' unit='GiB'/>"))
        #expect(d.cells.map(\.bytes) == [2 << 30, 1 << 30])
        #expect(try HookPlanner.plan(d, host: host()).backends.map(\.backend.id) == ["ram-node0", "ram-node1"])
        // A cell without an id takes its position: here 0, which the second cell's id also claims.
        #expect(domainXMLError(syntheticDomain(cells: "<cell cpus='0' memory='3' unit='GiB'/><cell id='0' cpus='1' memory='1' unit='GiB'/>"))
                == DomainXMLError(description: "cell id 0 is declared twice: libvirt refuses it"))
    }

    @Test(arguments: [
        ("<cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='0' cpus='1' memory='1' unit='GiB'/>", "cell id 0 is declared twice: libvirt refuses it"),
        ("<cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='2' cpus='1' memory='1' unit='GiB'/>", "<cell id='2'> with 2 cell(s): libvirt refuses ids that do not run 0 to 1"),
        ("<cell id='x' cpus='0' memory='1' unit='GiB'/>", "<cell id='x'> is not a cell number: libvirt refuses it"),
    ])
    func cellIdsLibvirtRefuses(cells: String, why: String) {
        #expect(domainXMLError(syntheticDomain(cells: cells)) == DomainXMLError(description: why))
    }

    @Test func aDeviceOnACellThatDoesNotExist() throws {
        let d = try DomainXML.parse(syntheticDomain(memory: "<memory unit='MiB'>2560</memory>", cells: twoCells,
            devices: "<memory model='dimm'><target><size unit='MiB'>512</size><node>7</node></target></memory>"))
        #expect(throws: PlanError.self) { try HookPlanner.plan(d, host: host()) }
    }

    @Test(arguments: ["<access mode='both'/>", "<source type='disk'/>"])
    func unknownBackingValues(inner: String) {
        #expect(domainXMLError(syntheticDomain(backing: backing(inner))) != nil)
    }

    @Test func zeroPageSize() {
        #expect(domainXMLError(syntheticDomain(backing: backing("<hugepages><page size='0'/></hugepages>"))) != nil)
    }
}

@Suite("HookHost: mounts")
struct HookHostMountTests {
    @Test func deepestMountWins() {
        let h = HookHost(memoryBackingDir: "/dev/hugepages/big/ram", hugetlbfs: [], hostMounts: [mount("/dev/hugepages", 2 * MiB), mount("/dev/hugepages/big", 1 * GiB)],
                         poolMounts: [mount("/dev/hugepages/big", 1 * GiB)], defaultHugepageSize: 2 * MiB)
        #expect(h.backingPoolMount?.pageSize == 1 * GiB)
        #expect(h.mount(of: "/dev/hugepages/bigger")?.pageSize == 2 * MiB)
        #expect(h.mount(of: "/dev/hugepagesX/ram") == nil)
        #expect(h.mount(of: "//dev//hugepages/big//x")?.pageSize == 1 * GiB)
    }

    @Test func fromHostFiles() {
        let mountinfo = """
            36 25 0:31 / /dev/hugepages rw,relatime shared:14 - hugetlbfs hugetlbfs rw,pagesize=2M
            40 25 0:35 / /mnt/huge1g rw,relatime shared:15 - hugetlbfs none rw,pagesize=1024M
            41 25 0:36 / /mnt/plain rw,relatime - tmpfs tmpfs rw
            """
        let all = HookHost(conf: QemuConf(memoryBackingDir: "/dev/hugepages/r"), meminfo: "Hugepagesize:    2048 kB\n", mountinfo: mountinfo, poolMounts: [])
        #expect(all.hugetlbfs.map(\.pageSize) == [2 * MiB, 1 * GiB])
        #expect(all.defaultHugepageSize == 2 * MiB)
        let named = HookHost(conf: QemuConf(hugetlbfsMounts: ["/mnt/huge1g"]), meminfo: "", mountinfo: mountinfo, poolMounts: [])
        #expect(named.hugetlbfs.map(\.path) == ["/mnt/huge1g"])
        #expect(named.hostMounts.count == 2)
    }

    @Test func ramIdFromTheCapabilitiesCache() {
        let caps = """
            <qemuCaps>
              <emulator>/usr/bin/qemu-system-x86_64</emulator>
              <machine type='kvm' name='pc-i440fx-7.2' alias='pc' hotplugCpus='yes' maxCpus='255' default='yes' defaultCPU='qemu64-x86_64-cpu' defaultRAMid='pc.ram'/>
              <machine type='tcg' name='virt-7.2' alias='virt' defaultRAMid='mach-virt.ram'/>
            </qemuCaps>
            """
        #expect(LibvirtBackends.cachedRAMId(capsXML: caps, emulator: "/usr/bin/qemu-system-x86_64", machine: "pc-i440fx-7.2", virtType: "kvm") == "pc.ram")
        #expect(LibvirtBackends.cachedRAMId(capsXML: caps, emulator: "/usr/bin/qemu-system-x86_64", machine: "pc", virtType: "kvm") == "pc.ram")
        #expect(LibvirtBackends.cachedRAMId(capsXML: caps, emulator: "/usr/bin/qemu-system-x86_64", machine: "virt-7.2", virtType: "qemu") == "mach-virt.ram")
        #expect(LibvirtBackends.cachedRAMId(capsXML: caps, emulator: "/usr/bin/qemu-system-x86_64", machine: "pc-i440fx-7.2", virtType: "qemu") == nil)
        #expect(LibvirtBackends.cachedRAMId(capsXML: caps, emulator: "/usr/bin/qemu-system-aarch64", machine: "virt-7.2", virtType: "qemu") == nil)
    }
}

@Suite("HookPlanner.domainDirectories / normalize")
struct HookPlannerDirectoryTests {
    private let base = "/dev/hugepages/libvirt-ram/libvirt/qemu/"

    private func dirs(_ name: String, id: Int = 7, backingDir: String = "/dev/hugepages/libvirt-ram") -> [String] {
        HookPlanner.domainDirectories(base: HookPlanner.normalize(backingDir) + "/libvirt/qemu", id: id, name: name)
    }

    @Test func shortNameIsIdDashName() {
        #expect(dirs("h1") == [base + "7-h1"])
        #expect(dirs("e8file", id: 18) == [base + "18-e8file"])
    }

    @Test func exactly20Characters() {
        let name = "abcdefghijklmnopqrst"
        #expect(name.count == 20)
        #expect(dirs(name) == [base + "7-abcdefghijklmnopqrst"])
    }

    @Test func characters21And40AreCutTo20() {
        #expect(dirs("abcdefghijklmnopqrstu") == [base + "7-abcdefghijklmnopqrst"])
        let forty = String(repeating: "0123456789", count: 4)
        #expect(forty.count == 40)
        #expect(dirs(forty) == [base + "7-01234567890123456789"])
    }

    @Test func namesWithSpaces() {
        #expect(dirs("my test domain") == [base + "7-my test domain"])
        #expect(dirs("my test domain with spaces") == [base + "7-my test domain with "])
    }

    @Test func nonASCIINameGivesTheCharacterCutThenTheByteCut() {
        // Precomposed ü (2 bytes in UTF-8), so 20 bytes end right after it.
        let name = "prezero long name \u{FC}n\u{EF}c\u{F6}d\u{E9} \u{6D4B}\u{8BD5} domain"
        #expect(name.unicodeScalars.count > 20)
        #expect(dirs(name, id: 12) == [base + "12-prezero long name \u{FC}n", base + "12-prezero long name \u{FC}"])
    }

    @Test func aByteCutInsideACharacterIsLeftOut() {
        // 19 ASCII + 测 (3 bytes): 20 bytes end inside 测.
        let name = "1234567890123456789\u{6D4B}\u{8BD5}"
        #expect(dirs(name) == [base + "7-1234567890123456789\u{6D4B}"])
    }

    @Test func shortNonASCIINameHasOneCandidate() {
        #expect(dirs("\u{FC}ber") == [base + "7-\u{FC}ber"])
    }

    @Test func combiningMarksCountAsScalars() {
        // "e" + U+0301 is one Character but two scalars (and three bytes); libvirt counts wchar_t.
        let name = String(repeating: "e\u{301}", count: 12)
        let scalars20 = String(repeating: "e\u{301}", count: 10)
        #expect(dirs(name).first == base + "7-" + scalars20)
    }

    @Test func backingDirIsNormalized() {
        #expect(dirs("h1", backingDir: "/dev//hugepages/libvirt-ram/") == [base + "7-h1"])
        #expect(dirs("h1", backingDir: "dev/hugepages/libvirt-ram") == [base + "7-h1"])
    }

    @Test func normalize() {
        #expect(HookPlanner.normalize("/dev/hugepages") == "/dev/hugepages")
        #expect(HookPlanner.normalize("/dev/hugepages/") == "/dev/hugepages")
        #expect(HookPlanner.normalize("//dev///hugepages//") == "/dev/hugepages")
        #expect(HookPlanner.normalize("dev/hugepages") == "/dev/hugepages")
        #expect(HookPlanner.normalize("/") == "/")
        #expect(HookPlanner.normalize("") == "/")
    }
}


@Suite("QemuConf.parse: libvirt's virconf grammar")
struct QemuConfTests {
    @Test func readsTheSettings() throws {
        let conf = try QemuConf.parse("""
            # Master configuration file for the QEMU driver.
            #
            #memory_backing_dir = "/var/lib/libvirt/qemu/ram"
            # user = "root"
            memory_backing_dir = "/dev/hugepages/libvirt-ram"   # where guest RAM goes
            \tuser\t=\t"libvirt-qemu"
            group="kvm"
            """)
        #expect(conf == QemuConf(memoryBackingDir: "/dev/hugepages/libvirt-ram", user: "libvirt-qemu", group: "kvm"))
    }

    /// Found by `make fuzz` (Fuzz/corpus/qemuconf/deeply-nested-lists): lists nested a
    /// few thousand deep overflowed the stack of the daemon reading qemu.conf.
    @Test func deeplyNestedListsAreAnErrorNotACrash() throws {
        let deep = "namespaces = " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: VirConf.ParseError.self) { try VirConf.parse(deep) }
        let fine = "namespaces = " + String(repeating: "[", count: VirConf.Parser.maxDepth) + "\"mount\"" + String(repeating: "]", count: VirConf.Parser.maxDepth)
        #expect(try VirConf.parse(fine).count == 1)
    }

    @Test func singleQuotesAsLibvirtReadsThem() throws {
        #expect(try QemuConf.parse("memory_backing_dir = '/dev/hugepages/x'").memoryBackingDir == "/dev/hugepages/x")
        #expect(try QemuConf.parse("user = 'a\"b'").user == "a\"b")
    }

    @Test func tripleQuotedStringsMaySpanLines() throws {
        #expect(try QemuConf.parse("user = \"\"\"li\nne\"\"\"\ngroup = \"g\"") == QemuConf(user: "li\nne", group: "g"))
    }

    /// virConfGetValue returns the first entry of a name: the first of repeated keys wins
    /// (checked against libvirtd 9.0 by the host test LibvirtPlanArgvTests).
    @Test func theFirstOfRepeatedKeysWins() throws {
        #expect(try QemuConf.parse("memory_backing_dir = \"/a\"\nmemory_backing_dir = \"/b\"").memoryBackingDir == "/a")
    }

    @Test func listsMaySpanLinesAndTrailWithAComma() throws {
        let conf = try QemuConf.parse("hugetlbfs_mount = [\n  \"/dev/hugepages\",\n\t'/mnt/huge1g',\n]\nuser = \"u\"")
        #expect(conf.hugetlbfsMounts == ["/dev/hugepages", "/mnt/huge1g"])
        #expect(conf.user == "u")
        #expect(try QemuConf.parse("hugetlbfs_mount = \"/dev/hugepages\"").hugetlbfsMounts == ["/dev/hugepages"])
        #expect(try QemuConf.parse("hugetlbfs_mount = []").hugetlbfsMounts == [])
    }

    @Test func semicolonsSeparateStatements() throws {
        #expect(try QemuConf.parse("user = \"a\"; group = \"b\"") == QemuConf(user: "a", group: "b"))
    }

    @Test func otherKeysOfAnyTypeAreIgnored() throws {
        let conf = try QemuConf.parse("""
            memory_backing_dirs = "/nope"
            xuser = "nope"
            max_processes = 0
            vnc_tls = -1
            cgroup_device_acl = [ "/dev/null", "/dev/full" ]
            """)
        #expect(conf == QemuConf())
    }

    @Test func emptyAndCommentOnlyText() throws {
        #expect(try QemuConf.parse("") == QemuConf())
        #expect(try QemuConf.parse("# only\n   # comments\n\n") == QemuConf())
        #expect(try QemuConf.parse("user = \"\"").user == "")
    }

    /// A `#` inside a quoted value is part of the value.
    @Test func hashInsideQuotesIsNotAComment() throws {
        #expect(try QemuConf.parse("memory_backing_dir = \"/mnt/huge#2/ram\" # comment").memoryBackingDir == "/mnt/huge#2/ram")
    }

    /// What libvirtd itself refuses to start with is an error, never a silent default.
    @Test(arguments: [
        "memory_backing_dir = \"/dev/hugepages", "memory_backing_dir = '/dev/hugepages", "user = \"\"\"never closed",
        "memory_backing_dir = /dev/hugepages", "user = qemu", "= \"x\"", "1user = \"x\"", "user \"x\"", "user = \"a\" \"b\"",
        "hugetlbfs_mount = [\"/a\" \"/b\"]", "hugetlbfs_mount = [\"/a\",", "hugetlbfs_mount = [\"/a\", # c\n \"/b\"]",
        "memory_backing_dir = 5", "user = [\"a\"]", "hugetlbfs_mount = 1", "hugetlbfs_mount = [1]",
        "max_processes = 99999999999999999999", "user = \"a\"\u{0}",
    ])
    func malformedConfIsAnError(text: String) {
        #expect(throws: QemuConf.ConfError.self, "\(text)") { try QemuConf.parse(text) }
    }

    /// libvirt 9.0's own shipped qemu.conf (Debian's libvirt-daemon-system), every line a comment.
    @Test func libvirtsShippedQemuConf() throws {
        let text = try String(contentsOf: LibvirtFixtures.directory.appendingPathComponent("libvirt-9.0-qemu.conf"), encoding: .utf8)
        #expect(text.count > 10_000)
        #expect(try QemuConf.parse(text) == QemuConf())
        // Uncommenting its examples gives a file libvirt (and prezero) reads.
        let live = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            for key in ["memory_backing_dir", "user", "group", "hugetlbfs_mount"] where line.hasPrefix("#\(key) = ") { return String(line.dropFirst()) }
            return String(line)
        }.joined(separator: "\n")
        let conf = try QemuConf.parse(live)
        #expect(conf.memoryBackingDir == "/var/lib/libvirt/qemu/ram")
        #expect(conf.user != nil && conf.hugetlbfsMounts?.isEmpty == false)
    }
}
