import Foundation
import PrezeroProtocol
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

@Suite("ProcParsers")
struct ProcParsersTests {
    /// Recorded from a host with a 2 MiB and a 1 GiB hugetlbfs mount (one with a space in its path).
    static let mountinfo = #"""
        22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
        23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
        24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
        25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=32819284k,nr_inodes=8204821,mode=755,inode64
        43 25 0:39 / /dev/hugepages rw,relatime shared:23 - hugetlbfs hugetlbfs rw,pagesize=2M
        44 25 0:20 / /dev/mqueue rw,nosuid,nodev,noexec,relatime shared:24 - mqueue mqueue rw
        612 22 0:58 / /mnt/huge\0401G rw,relatime shared:310 master:7 - hugetlbfs none rw,pagesize=1G,size=8G
        613 22 0:59 / /srv/hugetlbfs-look-alike rw,relatime - tmpfs tmpfs rw,size=1024k,inode64
        614 22 0:60 / /mnt/plain rw,relatime - hugetlbfs nodev rw
        """#

    @Test func findsOnlyHugetlbfsMounts() {
        let mounts = ProcParsers.hugetlbfsMounts(mountinfo: Self.mountinfo)
        #expect(mounts == [
            HugetlbfsMount(path: "/dev/hugepages", pageSizeOption: 2 * MiB),
            HugetlbfsMount(path: "/mnt/huge 1G", pageSizeOption: 1 * GiB),
            HugetlbfsMount(path: "/mnt/plain", pageSizeOption: nil),
        ])
    }

    @Test func pageSizeWrittenInMegabytes() {
        let line = "700 22 0:61 / /dev/hugepages1G rw,relatime shared:400 - hugetlbfs hugetlbfs rw,pagesize=1024M"
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: line)
            == [HugetlbfsMount(path: "/dev/hugepages1G", pageSizeOption: 1 * GiB)])
    }

    @Test func pageSizeIsFoundAnywhereInTheSuperOptions() {
        let line = "700 22 0:61 / /h rw - hugetlbfs hugetlbfs rw,uid=0,gid=0,mode=1770,pagesize=2M,size=50%"
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: line) == [HugetlbfsMount(path: "/h", pageSizeOption: 2 * MiB)])
    }

    @Test func mountPathEscapesAreDecoded() {
        let text = #"""
            1 1 0:1 / /a\011tab\012nl\134back rw - hugetlbfs hugetlbfs rw,pagesize=2M
            2 1 0:2 / /trailing\040 rw - hugetlbfs hugetlbfs rw,pagesize=2M
            """#
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: text).map(\.path) == ["/a\ttab\nnl\\back", "/trailing "])
    }

    @Test func unescape() {
        #expect(ProcParsers.unescape("/plain") == "/plain")
        #expect(ProcParsers.unescape(#"/a\040b"#) == "/a b")
        #expect(ProcParsers.unescape(#"\040"#) == " ")
        #expect(ProcParsers.unescape(#"/a\04"#) == #"/a\04"#)  // cut short: left alone
        #expect(ProcParsers.unescape(#"/a\xyz"#) == #"/a\xyz"#)  // not octal: left alone
        #expect(ProcParsers.unescape(#"/caf\303\251"#) == "/café")  // UTF-8 bytes
    }

    @Test func emptyAndJunkTextHasNoMounts() {
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: "").isEmpty)
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: "\n\n").isEmpty)
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: "hugetlbfs hugetlbfs rw,pagesize=2M").isEmpty)
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: "1 2 - hugetlbfs x rw").isEmpty)  // left half too short
        #expect(ProcParsers.hugetlbfsMounts(mountinfo: "1 1 0:1 / /h rw - hugetlbfs").isEmpty)  // right half too short
    }

    /// Recorded from a QEMU process with guest memory on hugetlbfs.
    static let maps = """
        55d0c2a00000-55d0c2a28000 r--p 00000000 103:02 1835050                   /usr/bin/qemu-system-x86_64
        55d0c2a28000-55d0c2f00000 r-xp 00028000 103:02 1835050                   /usr/bin/qemu-system-x86_64
        55d0c4c1e000-55d0c4e9a000 rw-p 00000000 00:00 0                          [heap]
        7f2a40000000-7f2b40000000 rw-s 00000000 00:2f 12345                      /dev/hugepages/.prezero/leased/k~n0-4294967296-7 (deleted)
        7f2b40000000-7f2b80000000 rw-s 00000000 00:3a 77                         /mnt/huge 1G/vm1
        7f2b80000000-7f2b80200000 rw-p 00000000 00:00 0 
        7f2b80200000-7f2b80400000 rw-s 00000000 fd:01 4096                       /var/lib/x
        7ffd1c3e1000-7ffd1c402000 rw-p 00000000 00:00 0                          [stack]
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
        """

    @Test func mappedInodesFromMaps() {
        #expect(ProcParsers.mappedInodes(maps: Self.maps) == [
            FileID(major: 0x103, minor: 2, inode: 1_835_050),
            FileID(major: 0, minor: 0x2f, inode: 12345),
            FileID(major: 0, minor: 0x3a, inode: 77),
            FileID(major: 0xfd, minor: 1, inode: 4096),
        ])
    }

    @Test func deviceNumbersAreHex() {
        let line = "7f0000000000-7f0000200000 rw-s 00000000 0a:1f 99 /x"
        #expect(ProcParsers.mappedInodes(maps: line) == [FileID(major: 10, minor: 31, inode: 99)])
    }

    @Test func anonymousAndMalformedLinesAreSkipped() {
        let text = """
            7ffd1c3e1000-7ffd1c402000 rw-p 00000000 00:00 0                          [stack]
            7f0000000000-7f0000200000 rw-s 00000000 zz:01 5 /bad-device
            7f0000000000-7f0000200000 rw-s 00000000 0001 5 /no-colon
            7f0000000000-7f0000200000 rw-s 00000000 00:01 notanumber /bad-inode
            short line

            """
        #expect(ProcParsers.mappedInodes(maps: text).isEmpty)
        #expect(ProcParsers.mappedInodes(maps: "").isEmpty)
    }

    @Test func cpuList() {
        #expect(ProcParsers.cpuList("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11])
        #expect(ProcParsers.cpuList("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(ProcParsers.cpuList("0") == [0])
        #expect(ProcParsers.cpuList("5-5") == [5])
        #expect(ProcParsers.cpuList("") == [])
        #expect(ProcParsers.cpuList("\n") == [])
        #expect(ProcParsers.cpuList("0-63").count == 64)
        #expect(ProcParsers.cpuList("3-1,x,7") == [7])
    }
}

@Suite("ByteSize")
struct ByteSizeTests {
    @Test(arguments: [
        ("0", 0), ("1", 1), ("1073741824", 1 << 30),
        ("1K", 1 << 10), ("1k", 1 << 10), ("4KiB", 4 << 10), ("4KB", 4 << 10),
        ("512M", 512 << 20), ("512MiB", 512 << 20), ("512mib", 512 << 20), ("2MB", 2 << 20), ("2mb", 2 << 20),
        ("8G", 8 << 30), ("8GiB", 8 << 30), ("1T", 1 << 40), ("1TiB", 1 << 40),
        (" 8G ", 8 << 30), ("17B", 17),
        ("18446744073709551615", UInt64.max), ("16777215T", 16_777_215 << 40),
    ] as [(String, UInt64)])
    func parses(text: String, bytes: UInt64) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: [
        "", " ", "abc", "G", "B", "iB", "MiB", "-1", "+1", "1.5G", "8 G", "8GG", "8P", "0x10", "1_000",
        "18446744073709551616", "16777216T", "99999999999999999999G", "٣G",
    ])
    func rejects(text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test(arguments: [
        (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
        (2 << 20, "2 MiB"), (8 << 30, "8 GiB"), (3 << 29, "1.5 GiB"), (1 << 40, "1 TiB"), (2048 << 40, "2048 TiB"),
    ] as [(UInt64, String)])
    func formats(bytes: UInt64, text: String) {
        #expect(ByteSize.format(bytes) == text)
    }

    @Test func roundUp() {
        #expect(ByteSize.roundUp(0, to: 2 * MiB) == 0)
        #expect(ByteSize.roundUp(1, to: 2 * MiB) == 2 * MiB)
        #expect(ByteSize.roundUp(2 * MiB, to: 2 * MiB) == 2 * MiB)
        #expect(ByteSize.roundUp(2 * MiB + 1, to: 2 * MiB) == 4 * MiB)
        #expect(ByteSize.roundUp(3 * GiB - 1, to: GiB) == 3 * GiB)
    }
}

@Suite("SizeSpec")
struct SizeSpecTests {
    @Test func parses() {
        #expect(SizeSpec("8G") == .bytes(8 * GiB))
        #expect(SizeSpec("512MiB") == .bytes(512 * MiB))
        #expect(SizeSpec("1073741824") == .bytes(GiB))
        #expect(SizeSpec("50%") == .percent(50))
        #expect(SizeSpec("12.5%") == .percent(12.5))
        #expect(SizeSpec("0%") == .percent(0))
        #expect(SizeSpec("100%") == .percent(100))
        #expect(SizeSpec(" 50% ") == .percent(50))
        #expect(SizeSpec("0") == .bytes(0))
    }

    @Test(arguments: ["abc", "150%", "100.1%", "-1%", "%", "", "50 %", "x%", "nan%", "inf%", "8 G"])
    func rejects(text: String) {
        #expect(SizeSpec(text) == nil)
    }

    @Test func resolve() {
        #expect(SizeSpec.bytes(8 * GiB).resolve(totalBytes: 0) == 8 * GiB)
        #expect(SizeSpec.bytes(8 * GiB).resolve(totalBytes: 64 * GiB) == 8 * GiB)
        #expect(SizeSpec.percent(50).resolve(totalBytes: 64 * GiB) == 32 * GiB)
        #expect(SizeSpec.percent(100).resolve(totalBytes: 64 * GiB) == 64 * GiB)
        #expect(SizeSpec.percent(0).resolve(totalBytes: 64 * GiB) == 0)
        #expect(SizeSpec.percent(50).resolve(totalBytes: 0) == 0)
        #expect(SizeSpec.percent(33).resolve(totalBytes: 100) == 33)
        #expect(SizeSpec.percent(33.3).resolve(totalBytes: 10) == 3)  // rounded down
        #expect(SizeSpec.percent(10).resolve(totalBytes: 15) == 1)
    }

    @Test func description() {
        #expect(SizeSpec.bytes(GiB).description == "1073741824")
        #expect(SizeSpec.percent(50).description == "50%")
        #expect(SizeSpec.percent(12.5).description == "12.5%")
    }

    @Test func descriptionParsesBack() {
        for s: SizeSpec in [.bytes(0), .bytes(GiB), .bytes(UInt64.max), .percent(0), .percent(12.5), .percent(100)] {
            #expect(SizeSpec(s.description) == s)
        }
    }

    @Test func codableRoundTrip() throws {
        let specs: [SizeSpec] = [.bytes(0), .bytes(8 * GiB), .percent(50), .percent(12.5)]
        let data = try JSONEncoder().encode(specs)
        #expect(String(decoding: data, as: UTF8.self) == #"["0","8589934592","50%","12.5%"]"#)
        #expect(try JSONDecoder().decode([SizeSpec].self, from: data) == specs)
    }

    @Test func decodesNumbersAndSizeStrings() throws {
        let data = Data(#"[1024, "2M", "25%"]"#.utf8)
        #expect(try JSONDecoder().decode([SizeSpec].self, from: data) == [.bytes(1024), .bytes(2 * MiB), .percent(25)])
    }

    @Test func decodingANonSizeFailsAndSaysWhy() {
        do {
            _ = try JSONDecoder().decode([SizeSpec].self, from: Data(#"["lots"]"#.utf8))
            Issue.record("decoded 'lots' as a size")
        } catch {
            #expect(Wire.describe(error).contains("'lots' is not a size"))
        }
        #expect(throws: (any Error).self) { try JSONDecoder().decode([SizeSpec].self, from: Data(#"["200%"]"#.utf8)) }
        #expect(throws: (any Error).self) { try JSONDecoder().decode([SizeSpec].self, from: Data("[-1]".utf8)) }
    }
}

@Suite("prezerod's capabilities")
struct CapabilitiesTests {
    @Test("CapEff is read from /proc/self/status; what is missing is named")
    func effectiveAndMissing() {
        let status = "Name:\tprezerod\nCapInh:\t0000000000000000\nCapEff:\t000000000008000b\nCapBnd:\t000001ffffffffff\n"
        let eff = DaemonCapabilities.effective(status: status)
        #expect(eff == 0x8000b)
        #expect(DaemonCapabilities.missing(effective: 0xb).isEmpty, "chown, dac_override, fowner")
        #expect(DaemonCapabilities.missing(effective: 0xa).map(\.name) == ["CAP_CHOWN"])
        #expect(DaemonCapabilities.missing(effective: 0x80000).map(\.name) == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"])
        #expect(DaemonCapabilities.effective(status: "Name:\tx\n") == nil)
    }

    @Test("with other callers, setuid and setgid too: their links are made with their own identity")
    func otherCallers() {
        #expect(DaemonCapabilities.missing(effective: 0x8000b, otherCallers: true).map(\.name) == ["CAP_SETGID", "CAP_SETUID"])
        #expect(DaemonCapabilities.missing(effective: 0x800cb, otherCallers: true).isEmpty)
        #expect(DaemonCapabilities.needed(otherCallers: false) == DaemonCapabilities.needed)
    }
}
