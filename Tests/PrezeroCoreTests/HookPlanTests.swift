import Foundation
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private let standardHost = HookHost(memoryBackingDir: "/dev/hugepages/libvirt-ram",
                                    poolMounts: [("/dev/hugepages", 2 * MiB)], defaultPageSize: 2 * MiB)

private func host(dir: String?, mounts: [(String, UInt64)] = [("/dev/hugepages", 2 * MiB)], defaultPageSize: UInt64 = 2 * MiB) -> HookHost {
    HookHost(memoryBackingDir: dir, poolMounts: mounts.map { (path: $0.0, pageSize: $0.1) }, defaultPageSize: defaultPageSize)
}

private func makeRoom(_ d: HookDecision) -> (pageSize: UInt64, pages: [String: UInt64], reason: String)? {
    if case .makeRoom(let ps, let pages, let reason) = d { return (ps, pages, reason) }
    return nil
}

private func leftAlone(_ d: HookDecision) -> String? {
    if case .leaveAlone(let why) = d { return why }
    return nil
}

@Suite("HookPlanner.decide")
struct HookPlannerDecideTests {
    @Test func h1IsHandedOver() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        #expect(HookPlanner.decide(d, host: standardHost)
            == .handOver(pageSize: 2 * MiB, backends: [MemoryBackend(alias: "pc.ram", bytes: 2 * GiB, hostNodes: [], shared: true)]))
    }

    @Test func h2IsHandedOver() throws {
        let d = try LibvirtFixtures.startBegin("h2")
        #expect(HookPlanner.decide(d, host: standardHost)
            == .handOver(pageSize: 2 * MiB, backends: [MemoryBackend(alias: "ram-node0", bytes: 2 * GiB, hostNodes: [], shared: true)]))
    }

    @Test func n1IsHandedOverOnNode0() throws {
        let d = try LibvirtFixtures.startBegin("n1")
        #expect(HookPlanner.decide(d, host: standardHost)
            == .handOver(pageSize: 2 * MiB, backends: [MemoryBackend(alias: "ram-node0", bytes: 2 * GiB, hostNodes: [0], shared: true)]))
    }

    @Test func e8fileIsHandedOver() throws {
        let d = try LibvirtFixtures.startBegin("e8file")
        #expect(HookPlanner.decide(d, host: standardHost)
            == .handOver(pageSize: 2 * MiB, backends: [MemoryBackend(alias: "pc.ram", bytes: 8 * GiB, hostNodes: [], shared: true)]))
    }

    @Test func p1IsNotSharedSoRoomIsMade() throws {
        let d = try LibvirtFixtures.startBegin("p1")
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pageSize == 2 * MiB)
        #expect(r.pages == ["*": 1024])
        #expect(r.reason.contains("pc.ram"))
        #expect(r.reason.contains("shared"))
    }

    @Test func k1IsLeftAlone() throws {
        let d = try LibvirtFixtures.startBegin("k1")
        let why = try #require(leftAlone(HookPlanner.decide(d, host: standardHost)))
        #expect(why.contains("file-backed"))
    }

    @Test func k1IsLeftAloneEvenWithoutABackingDir() throws {
        let d = try LibvirtFixtures.startBegin("k1")
        #expect(leftAlone(HookPlanner.decide(d, host: host(dir: nil))) != nil)
    }

    @Test func hugepagesUnboundMakesRoomAnywhere() throws {
        let d = try DomainXML.parse(syntheticDomain(backing: "<memoryBacking><hugepages/></memoryBacking>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pageSize == 2 * MiB)
        #expect(r.pages == ["*": 1024])
        #expect(r.reason.contains("<hugepages/>"))
    }

    @Test func hugepagesUsesTheHostDefaultPageSize() throws {
        let d = try DomainXML.parse(syntheticDomain(backing: "<memoryBacking><hugepages/></memoryBacking>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: host(dir: nil, defaultPageSize: 1 * GiB))))
        #expect(r.pageSize == 1 * GiB)
        #expect(r.pages == ["*": 2])
    }

    @Test func hugepagesWithAPageSizeUsesIt() throws {
        let d = try DomainXML.parse(syntheticDomain(
            backing: "<memoryBacking><hugepages><page size='1048576' unit='KiB'/></hugepages></memoryBacking>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pageSize == 1 * GiB)
        #expect(r.pages == ["*": 2])
    }

    @Test func hugepagesBoundMakesRoomPerNode() throws {
        let d = try DomainXML.parse(syntheticDomain(
            backing: "<memoryBacking><hugepages/></memoryBacking>",
            numatune: "<numatune><memory mode='strict' nodeset='1'/></numatune>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pages == ["1": 1024])
    }

    @Test func hugepagesTwoCellsOnTwoNodes() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<memory unit='KiB'>3145728</memory>",
            backing: "<memoryBacking><hugepages/></memoryBacking>",
            numatune: "<numatune><memnode cellid='0' mode='strict' nodeset='0'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>",
            cells: "<cell id='0' cpus='0' memory='2097152' unit='KiB'/><cell id='1' cpus='1' memory='1048576' unit='KiB'/>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pages == ["0": 1024, "1": 512])
    }

    @Test func hugepagesMixedBoundAndUnboundCells() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<memory unit='KiB'>3145728</memory>",
            backing: "<memoryBacking><hugepages/></memoryBacking>",
            numatune: "<numatune><memnode cellid='1' mode='strict' nodeset='1'/></numatune>",
            cells: "<cell id='0' cpus='0' memory='2097152' unit='KiB'/><cell id='1' cpus='1' memory='1048576' unit='KiB'/>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pages == ["*": 1024, "1": 512])
    }

    @Test func hugepagesWinOverAFileSource() throws {
        let d = try DomainXML.parse(syntheticDomain(
            backing: "<memoryBacking><hugepages/><source type='file'/><access mode='shared'/></memoryBacking>"))
        #expect(makeRoom(HookPlanner.decide(d, host: standardHost)) != nil)
    }

    @Test func noMemoryBackingDirLeavesItAlone() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        let why = try #require(leftAlone(HookPlanner.decide(d, host: host(dir: nil))))
        #expect(why.contains("memory_backing_dir"))
    }

    @Test(arguments: ["/var/lib/libvirt/qemu/ram", "/dev/hugepages-other/libvirt-ram", "/dev", "/", "dev/shm"])
    func backingDirOffThePoolLeavesItAlone(dir: String) throws {
        let d = try LibvirtFixtures.startBegin("h1")
        let why = try #require(leftAlone(HookPlanner.decide(d, host: host(dir: dir))))
        #expect(why.contains(dir))
        #expect(why.contains("/dev/hugepages"))
    }

    @Test func noPoolMountsLeavesItAlone() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        #expect(leftAlone(HookPlanner.decide(d, host: host(dir: "/dev/hugepages/libvirt-ram", mounts: []))) != nil)
    }

    @Test func backingDirIsTheMountItself() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        guard case .handOver(let ps, _) = HookPlanner.decide(d, host: host(dir: "/dev/hugepages")) else {
            Issue.record("not handed over")
            return
        }
        #expect(ps == 2 * MiB)
    }

    @Test func pageSizeComesFromTheBackingMount() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        let h = host(dir: "/mnt/huge1g/libvirt", mounts: [("/dev/hugepages", 2 * MiB), ("/mnt/huge1g", 1 * GiB)])
        #expect(HookPlanner.decide(d, host: h)
            == .handOver(pageSize: 1 * GiB, backends: [MemoryBackend(alias: "pc.ram", bytes: 2 * GiB, hostNodes: [], shared: true)]))
    }

    @Test func sizeNotAWholeNumberOfPagesMakesRoom() throws {
        let d = try DomainXML.parse(syntheticDomain(memory: "<memory unit='KiB'>2100224</memory>")) // 2 GiB + 3 MiB
        #expect(d.backends.map(\.bytes) == [2 * GiB + 3 * MiB])
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pageSize == 2 * MiB)
        #expect(r.pages == ["*": 1026])
        #expect(r.reason.contains("pc.ram"))
        #expect(r.reason.contains("not a whole number"))
    }

    @Test func sizeNotAWholeNumberOf1GiBPages() throws {
        let d = try LibvirtFixtures.startBegin("h1")
        var big = d
        big.backends[0].bytes = 3 * GiB / 2
        let h = host(dir: "/mnt/huge1g/ram", mounts: [("/mnt/huge1g", 1 * GiB)])
        let r = try #require(makeRoom(HookPlanner.decide(big, host: h)))
        #expect(r.pages == ["*": 2])
    }

    @Test func aZeroSizedCellMakesRoom() throws {
        let d = try DomainXML.parse(syntheticDomain(
            cells: "<cell id='0' cpus='0' memory='2097152' unit='KiB'/><cell id='1' cpus='1' memory='0' unit='KiB'/>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.reason.contains("ram-node1"))
    }

    @Test func onePrivateCellMakesRoomForAll() throws {
        let d = try DomainXML.parse(syntheticDomain(
            numatune: "<numatune><memnode cellid='0' mode='strict' nodeset='0'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>",
            cells: "<cell id='0' cpus='0' memory='1048576' unit='KiB'/><cell id='1' cpus='1' memory='1048576' unit='KiB' memAccess='private'/>"))
        let r = try #require(makeRoom(HookPlanner.decide(d, host: standardHost)))
        #expect(r.pages == ["0": 512, "1": 512])
        #expect(r.reason.contains("ram-node1"))
    }

    @Test func twoSharedCellsAreHandedOverOnTheirNodes() throws {
        let d = try DomainXML.parse(syntheticDomain(
            memory: "<memory unit='KiB'>4194304</memory>",
            numatune: "<numatune><memnode cellid='0' mode='strict' nodeset='0'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>",
            cells: "<cell id='0' cpus='0' memory='2097152' unit='KiB'/><cell id='1' cpus='1' memory='2097152' unit='KiB'/>"))
        #expect(HookPlanner.decide(d, host: standardHost) == .handOver(pageSize: 2 * MiB, backends: [
            MemoryBackend(alias: "ram-node0", bytes: 2 * GiB, hostNodes: [0], shared: true),
            MemoryBackend(alias: "ram-node1", bytes: 2 * GiB, hostNodes: [1], shared: true),
        ]))
    }

    /// A zero page size (`<page size='0'/>`) must not divide by zero.
    @Test func zeroHugepageSizeDoesNotCrash() async {
        await #expect(processExitsWith: .success) {
            let xml = syntheticDomain(backing: "<memoryBacking><hugepages><page size='0' unit='KiB'/></hugepages></memoryBacking>")
            guard let d = try? DomainXML.parse(xml) else { exit(0) }
            _ = HookPlanner.decide(d, host: HookHost(memoryBackingDir: "/dev/hugepages/libvirt-ram",
                                                    poolMounts: [("/dev/hugepages", 2 << 20)], defaultPageSize: 2 << 20))
        }
    }

    /// Backends whose sizes parse but whose sum or page round-up passes UInt64.max must not trap.
    @Test func hugeBackendsDoNotCrash() async {
        await #expect(processExitsWith: .success) {
            let xml = syntheticDomain(
                memory: "<memory unit='b'>18446744073709551615</memory>",
                cells: "<cell id='0' cpus='0' memory='9223372036854775808' unit='b'/><cell id='1' cpus='1' memory='9223372036854775808' unit='b'/>")
            guard let d = try? DomainXML.parse(xml) else { exit(0) }
            _ = HookPlanner.decide(d, host: HookHost(memoryBackingDir: "/dev/hugepages/libvirt-ram",
                                                    poolMounts: [("/dev/hugepages", 2 << 20)], defaultPageSize: 2 << 20))
        }
    }

    @Test func oneMaximalBackendDoesNotCrash() async {
        await #expect(processExitsWith: .success) {
            let xml = syntheticDomain(memory: "<memory unit='b'>18446744073709551615</memory>")
            guard let d = try? DomainXML.parse(xml) else { exit(0) }
            _ = HookPlanner.decide(d, host: HookHost(memoryBackingDir: "/dev/hugepages/libvirt-ram",
                                                    poolMounts: [("/dev/hugepages", 2 << 20)], defaultPageSize: 2 << 20))
        }
    }
}

@Suite("HookPlanner.pagesPerNode")
struct HookPlannerPagesTests {
    @Test func unboundBackendsAddUpUnderStar() {
        let pages = HookPlanner.pagesPerNode([
            MemoryBackend(alias: "ram-node0", bytes: 1 * GiB, hostNodes: [], shared: true),
            MemoryBackend(alias: "ram-node1", bytes: 1 * GiB + 1, hostNodes: [], shared: true),
        ], pageSize: 2 * MiB)
        #expect(pages == ["*": 512 + 513])
    }

    @Test func boundToSeveralNodesAsksEachForItsShareRoundedUp() {
        let pages = HookPlanner.pagesPerNode([MemoryBackend(alias: "pc.ram", bytes: 2 * GiB, hostNodes: [0, 1, 3], shared: true)],
                                             pageSize: 2 * MiB)
        #expect(pages == ["0": 342, "1": 342, "3": 342])
    }

    @Test func sameNodeTwiceAddsUp() {
        let pages = HookPlanner.pagesPerNode([
            MemoryBackend(alias: "ram-node0", bytes: 1 * GiB, hostNodes: [0], shared: true),
            MemoryBackend(alias: "ram-node1", bytes: 2 * GiB, hostNodes: [0], shared: true),
        ], pageSize: 1 * GiB)
        #expect(pages == ["0": 3])
    }

    @Test func nothingForNoBackends() {
        #expect(HookPlanner.pagesPerNode([], pageSize: 2 * MiB).isEmpty)
    }
}

@Suite("HookHost.backingMount")
struct HookHostBackingMountTests {
    @Test func picksTheLongestMatchingMount() {
        for mounts in [[("/dev/hugepages", 2 * MiB), ("/dev/hugepages/big", 1 * GiB)],
                       [("/dev/hugepages/big", 1 * GiB), ("/dev/hugepages", 2 * MiB)]] {
            let h = host(dir: "/dev/hugepages/big/libvirt-ram", mounts: mounts)
            #expect(h.backingMount?.path == "/dev/hugepages/big")
            #expect(h.backingMount?.pageSize == 1 * GiB)
            #expect(host(dir: "/dev/hugepages/libvirt-ram", mounts: mounts).backingMount?.pageSize == 2 * MiB)
            #expect(host(dir: "/dev/hugepages/bigger", mounts: mounts).backingMount?.pageSize == 2 * MiB)
        }
    }

    @Test(arguments: [
        "/dev/hugepages/libvirt-ram/",
        "/dev/hugepages//libvirt-ram",
        "//dev//hugepages///libvirt-ram//",
        "/dev/hugepages",
        "/dev/hugepages/",
    ])
    func toleratesSlashesInTheBackingDir(dir: String) {
        #expect(host(dir: dir).backingMount?.pageSize == 2 * MiB)
    }

    @Test(arguments: ["/dev/hugepages/", "/dev//hugepages", "//dev/hugepages//"])
    func toleratesSlashesInTheMountPath(mount: String) {
        let h = host(dir: "/dev/hugepages/libvirt-ram", mounts: [(mount, 2 * MiB)])
        #expect(h.backingMount?.pageSize == 2 * MiB)
    }

    /// The longest mount is the longest once normalised, not the longest as written.
    @Test func longestMatchIgnoresExtraSlashes() {
        let h = host(dir: "/dev/hugepages/1g/libvirt-ram", mounts: [("/dev/hugepages///", 2 * MiB), ("/dev/hugepages/1g", 1 * GiB)])
        #expect(h.backingMount?.pageSize == 1 * GiB, "picked \(h.backingMount.map { "\($0.path)" } ?? "nil")")
    }

    @Test func noMatch() {
        #expect(host(dir: "/dev/hugepagesX/ram").backingMount == nil)
        #expect(host(dir: "/dev").backingMount == nil)
        #expect(host(dir: nil).backingMount == nil)
        #expect(host(dir: "/dev/hugepages/ram", mounts: []).backingMount == nil)
    }
}

@Suite("HookPlanner.domainDirectories / normalize")
struct HookPlannerDirectoryTests {
    private let base = "/dev/hugepages/libvirt-ram/libvirt/qemu/"

    private func dirs(_ name: String, id: Int = 7, backingDir: String = "/dev/hugepages/libvirt-ram") -> [String] {
        HookPlanner.domainDirectories(backingDir: backingDir, id: id, name: name)
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

@Suite("QemuConf.parse")
struct QemuConfTests {
    @Test func readsTheThreeSettings() {
        let conf = QemuConf.parse("""
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

    @Test func commentedOutLinesAreIgnored() {
        let conf = QemuConf.parse("""
            #memory_backing_dir = "/dev/hugepages/libvirt-ram"
              # user = "qemu"
            ##group = "kvm"
            """)
        #expect(conf == QemuConf())
    }

    @Test func unquotedValuesAreIgnored() {
        let conf = QemuConf.parse("""
            memory_backing_dir = /dev/hugepages/libvirt-ram
            user = qemu
            group = "kvm
            """)
        #expect(conf == QemuConf(memoryBackingDir: nil, user: nil, group: nil))
    }

    @Test func otherKeysAndLookAlikesAreIgnored() {
        let conf = QemuConf.parse("""
            memory_backing_dirs = "/nope"
            xuser = "nope"
            group_x = "nope"
            security_driver = "none"
            hugetlbfs_mount = ["/dev/hugepages", "/mnt/huge1g"]
            """)
        #expect(conf == QemuConf())
    }

    @Test func spacesAroundKeysAndValues() {
        let conf = QemuConf.parse("   memory_backing_dir   =   \"/dev/hugepages/a b\"   \nuser=\"+0\"")
        #expect(conf.memoryBackingDir == "/dev/hugepages/a b")
        #expect(conf.user == "+0")
    }

    @Test func emptyText() {
        #expect(QemuConf.parse("") == QemuConf())
    }

    @Test func emptyQuotedValue() {
        #expect(QemuConf.parse("user = \"\"").user == "")
    }

    /// A `#` inside a quoted value is part of the value, as libvirt's own parser reads it.
    @Test func hashInsideQuotesIsNotAComment() {
        #expect(QemuConf.parse("memory_backing_dir = \"/mnt/huge#2/ram\" # comment").memoryBackingDir == "/mnt/huge#2/ram")
    }
}
