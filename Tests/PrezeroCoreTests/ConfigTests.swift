import Foundation
import Testing
@testable import PrezeroCore
@testable import PrezeroConfigYAML

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// The ConfigError a text gives, or nil when it parses.
private func parseError(_ yaml: String) -> ConfigError? {
    do {
        _ = try Config.parse(yaml: yaml)
        return nil
    } catch {
        return error
    }
}

@Suite("Config.parse")
struct ConfigTests {
    @Test func defaults() {
        let c = Config()
        #expect(c.socket == "/run/prezero/prezerod.sock")
        #expect(c.stateDir == "/run/prezero")
        #expect(c.poolDir == ".prezero")
        #expect(c.mounts.isEmpty)
        #expect(c.target == .percent(50))
        #expect(c.minFree == .percent(10))
        #expect(c.fileSize == .bytes(GiB))
        #expect(c.fillChunk == .bytes(256 * MiB))
        #expect(c.fillBandwidth == .bytes(0))
        #expect(c.allowedDirs.isEmpty && c.allowedUids.isEmpty && c.allowedGids.isEmpty)
        #expect(c.socketGroup == nil)
        #expect(c.uidQuota == .percent(25))
        #expect(c.maxRequestBytes == 1 << 20)
        #expect(c.requestTimeoutMs == 5000)
        #expect(c.learnedShapes == 8)
        #expect(c.reclaimIntervalMs == 500)
        #expect(c.monitorIntervalMs == 200)
        #expect(c.makeRoomHoldS == 30)
    }

    @Test(arguments: ["", " ", "\n\n", "  \n\t\n"])
    func emptyTextGivesDefaults(text: String) throws {
        #expect(try Config.parse(yaml: text) == Config())
    }

    @Test func aFileOfOnlyCommentsGivesDefaults() throws {
        // The shipped example config is every key commented out.
        let text = """
            # prezerod configuration; every key has a default.
            # target: 50%
            # scrub:
            #   strategy: zero
            """
        #expect(try Config.parse(yaml: text) == Config())
    }

    @Test func anEmptyMappingGivesDefaults() throws {
        #expect(try Config.parse(yaml: "{}") == Config())
    }

    static let full = """
        # Every key, none at its default.
        socket: /run/pz/ctl.sock
        state_dir: /var/lib/pz
        pool_dir: .pool
        mounts:
          - path: /dev/hugepages
            target: 8G
            min_free: 512MiB
            file_size: 2G
            nodes:
              0: 4G
              "1": 25%
          - path: /dev/hugepages1G
        target: 75%
        min_free: 2G
        file_size: 4G
        fill_chunk: 128M
        fill_bandwidth: 200M
        fill_workers: 6
        allowed_dirs: [/var/lib/libvirt/qemu, /srv/vm]
        allowed_uids: [64055, 1000]
        allowed_gids: [64055]
        socket_group: prezero
        uid_quota: 64G
        max_request_bytes: 65536
        request_timeout_ms: 2500
        learned_shapes: 4
        reclaim_interval_ms: 250
        monitor_interval_ms: 100
        make_room_hold_s: 60
        refill_delay_ms: 500
        qemu_conf: /srv/qemu.conf
        libvirt_capabilities_cache: /srv/caps
        metrics_textfile: /var/lib/node-exporter/prezero.prom
        metrics_interval_ms: 5000
        """

    @Test func aFullFileParses() throws {
        let c = try Config.parse(yaml: Self.full)
        #expect(c.socket == "/run/pz/ctl.sock")
        #expect(c.stateDir == "/var/lib/pz")
        #expect(c.poolDir == ".pool")
        #expect(c.mounts == [
            MountConfig(path: "/dev/hugepages", target: .bytes(8 * GiB), minFree: .bytes(512 * MiB),
                        fileSize: .bytes(2 * GiB), nodes: ["0": .bytes(4 * GiB), "1": .percent(25)]),
            MountConfig(path: "/dev/hugepages1G"),
        ])
        #expect(c.target == .percent(75))
        #expect(c.minFree == .bytes(2 * GiB))
        #expect(c.fileSize == .bytes(4 * GiB))
        #expect(c.fillChunk == .bytes(128 * MiB))
        #expect(c.fillBandwidth == .bytes(200 * MiB))
        #expect(c.fillWorkers == 6)
        #expect(c.allowedDirs == ["/var/lib/libvirt/qemu", "/srv/vm"])
        #expect(c.allowedUids == [64055, 1000])
        #expect(c.allowedGids == [64055])
        #expect(c.socketGroup == "prezero")
        #expect(c.uidQuota == .bytes(64 * GiB))
        #expect(c.maxRequestBytes == 65536)
        #expect(c.requestTimeoutMs == 2500)
        #expect(c.learnedShapes == 4)
        #expect(c.reclaimIntervalMs == 250)
        #expect(c.monitorIntervalMs == 100)
        #expect(c.makeRoomHoldS == 60)
        #expect(c.refillDelayMs == 500)
        #expect(c.qemuConf == "/srv/qemu.conf")
        #expect(c.metricsTextfile == "/var/lib/node-exporter/prezero.prom")
        #expect(c.metricsIntervalMs == 5000)
    }

    @Test func everyKeyIsCoveredByTheFullFile() {
        // If a key is added to Config, the full file above must name it too.
        for key in Config.CodingKeys.allCases {
            #expect(Self.full.contains("\n\(key.stringValue):"), "full file lacks \(key.stringValue)")
        }
        for key in MountConfig.CodingKeys.allCases {
            #expect(Self.full.contains(" \(key.stringValue):"), "full file lacks mounts.\(key.stringValue)")
        }
    }

    @Test func unsetKeysKeepTheirDefaults() throws {
        let c = try Config.parse(yaml: "target: 16G\nrefill_delay_ms: 10\n")
        var expected = Config()
        expected.target = .bytes(16 * GiB)
        expected.refillDelayMs = 10
        #expect(c == expected)
    }

    @Test func sizesMayBePlainNumbers() throws {
        let c = try Config.parse(yaml: "file_size: 1073741824\nmin_free: 0\n")
        #expect(c.fileSize == .bytes(GiB))
        #expect(c.minFree == .bytes(0))
    }

    @Test func nullKeepsTheDefault() throws {
        #expect(try Config.parse(yaml: "socket: ~\nmetrics_textfile:\n") == Config())
    }

    /// Zeroing a released file in place for the next tenant is gone: a config that still asks
    /// for it must say so, not start with a setting that no longer means anything.
    @Test(arguments: ["scrub:\n  strategy: kernel\n", "scrub:\n  strategy: zero\n  bandwidth: 1G\n", "scrub: {}\n", "scrub:\n"])
    func aScrubSectionIsAnErrorNamingWhatReplacedIt(_ yaml: String) throws {
        let e = try #require(parseError("target: 8G\n" + yaml))
        #expect(e.message.hasPrefix("scrub: was removed"), "\(e)")
        #expect(e.message.contains("fill_bandwidth") && e.message.contains("kernel"), "\(e)")
        #expect(!e.message.contains("\n"))
    }

    @Test func anUnknownKeyIsAnErrorNamingIt() throws {
        let e = try #require(parseError("tagret: 5G\n"))
        #expect(e.message.contains("'tagret'"), "\(e)")
        #expect(e.message.contains("unknown key"), "\(e)")
        #expect(e.message.contains("target"), "the known keys are listed: \(e)")
        #expect(e.description == e.message)
    }

    @Test func anUnknownKeyAmongKnownOnesIsStillAnError() throws {
        let e = try #require(parseError("target: 8G\nfile_size: 1G\ntagret: 5G\n"))
        #expect(e.message.contains("'tagret'"), "\(e)")
    }

    @Test func anUnknownKeyInsideAMountNamesWhere() throws {
        let e = try #require(parseError("mounts:\n  - path: /h\n    tagret: 1G\n"))
        #expect(e.message.contains("'tagret'"), "\(e)")
        #expect(e.message.contains("mounts"), "\(e)")
        #expect(e.message.contains("min_free"), "the known keys are listed: \(e)")
    }

    @Test func anUnknownKeyInsideAMountIsAnError() throws {
        let e = try #require(parseError("mounts:\n  - path: /dev/hugepages\n    traget: 4G\n"))
        #expect(e.message.contains("'traget'"), "\(e)")
        #expect(e.message.contains("mounts"), "\(e)")
    }

    @Test func aMountWithoutAPathIsAnError() throws {
        let e = try #require(parseError("mounts:\n  - target: 4G\n"))
        #expect(e.message.contains("path"), "\(e)")
    }

    @Test(arguments: [
        ("target: lots", "target"), ("min_free: 150%", "min_free"), ("file_size: 1.5G", "file_size"),
        ("fill_chunk: -1", "fill_chunk"), ("fill_bandwidth: 8 M", "fill_bandwidth"),
        ("mounts:\n  - path: /h\n    nodes:\n      0: huge", "huge"),
    ])
    func aBadSizeIsAnError(text: String, mentions: String) throws {
        let e = try #require(parseError(text), "\(text) parsed")
        #expect(e.message.contains(mentions), "\(e)")
        #expect(e.message.contains("not a size") || e.message.contains("Expected"), "\(e)")
    }

    @Test(arguments: ["fill_workers: 0", "fill_workers: 65", "fill_workers: -3"])
    func fillWorkersOutOfRange(text: String) throws {
        let e = try #require(parseError(text), "\(text) parsed")
        #expect(e.message.hasPrefix("fill_workers: ") && e.message.contains("1 to 64"), "\(e)")
    }

    @Test func fillWorkersDefaultToHalfTheNodesCPUs() {
        #expect(FillWorkers.count(configured: nil, nodeCPUs: 2) == 1)
        #expect(FillWorkers.count(configured: nil, nodeCPUs: 1) == 1)
        #expect(FillWorkers.count(configured: nil, nodeCPUs: 16) == 8)
        #expect(FillWorkers.count(configured: nil, nodeCPUs: 96) == 16)
        #expect(FillWorkers.count(configured: 4, nodeCPUs: 2) == 4)
    }

    @Test(arguments: ["learned_shapes: many", "allowed_uids: [-1]", "allowed_dirs: /one", "mounts: /dev/hugepages",
                      "pool_dir: [a]", "request_timeout_ms: 1.5", "fill_workers: two"])
    func aBadTypeIsAnError(text: String) {
        #expect(parseError(text) != nil, "\(text) parsed")
    }

    @Test func notAMappingIsAnError() {
        #expect(parseError("- a\n- b\n") != nil)
        #expect(parseError("just words") != nil)
        #expect(parseError("target: [unclosed") != nil)
    }

    /// Yams quotes the YAML over several lines; prezerod's error is one line that says
    /// where (found by `make fuzz`: the example's header, uncommented as prose).
    @Test(arguments: [
        ("prose before a key", "/etc/prezero/prezerod.yaml: every key, at its default.\nthis file; uncomment.\n\nsocket: /run/x\n", "line "),
        ("unclosed flow", "target: [unclosed", "line "),
        ("tab indent", "mounts:\n\t- path: /h\n", "line "),
        ("duplicate key", "socket: /a\nsocket: /b\n", "socket"),
    ])
    func aMalformedFileIsAOneLineErrorSayingWhere(label: String, text: String, says: String) {
        let err = parseError(text)
        #expect(err != nil, "\(label) parsed")
        #expect(err.map { !$0.message.contains("\n") && $0.message.contains(says) } == true, "\(label): \(err?.message ?? "")")
    }

    @Test(arguments: ["''", "a/b", "/abs", "..", "../up", "..hidden", "."])
    func poolDirMustBeAPlainName(dir: String) throws {
        let e = try #require(parseError("pool_dir: \(dir)\n"), "pool_dir \(dir) accepted")
        #expect(e.message.contains("pool_dir"), "\(e)")
    }

    @Test(arguments: [".prezero", "prezero", "pool-2"])
    func plainPoolDirsAreAccepted(dir: String) throws {
        #expect(try Config.parse(yaml: "pool_dir: \(dir)\n").poolDir == dir)
    }

    @Test func maxRequestBytesHasAFloor() throws {
        let e = try #require(parseError("max_request_bytes: 1023\n"))
        #expect(e.message.contains("max_request_bytes"), "\(e)")
        #expect(try Config.parse(yaml: "max_request_bytes: 1024\n").maxRequestBytes == 1024)
    }

    @Test(arguments: ["allowed_uids: [1000]\n", "allowed_gids: [36]\n"])
    func otherCallersNeedASocketGroup(yaml: String) throws {
        let e = try #require(parseError(yaml))
        #expect(e.message.contains("socket_group is not set") && e.message.contains("never open to all"), "\(e)")
        #expect(try Config.parse(yaml: yaml + "socket_group: kvm\n").socketGroup == "kvm")
    }

    @Test(arguments: ["socket_group: ''\n", "socket_group: a:b\n", "socket_group: a b\n", "uid_quota: lots\n"])
    func badCallerSettingsAreRefused(yaml: String) throws {
        let e = try #require(parseError(yaml))
        #expect(e.message.contains("socket_group") || e.message.contains("uid_quota"), "\(e)")
    }

    @Test(arguments: ["metrics_textfile: prezero.prom\n", "metrics_textfile: /var/lib/\n", "metrics_interval_ms: 99\n"])
    func badMetricsSettingsAreRefused(yaml: String) throws {
        let e = try #require(parseError(yaml))
        #expect(e.message.hasPrefix("metrics_"), "\(e)")
    }

    /// JSON is YAML: a config written out by JSONEncoder reads back the same.
    @Test func encodedConfigParsesBack() throws {
        var c = Config()
        c.socket = "/tmp/pz.sock"
        c.mounts = [MountConfig(path: "/dev/hugepages", target: .percent(12.5), nodes: ["1": .bytes(2 * GiB)])]
        c.target = .bytes(3 * GiB)
        c.allowedUids = [1, 2]
        c.fillBandwidth = .bytes(100 * MiB)
        c.socketGroup = "+4242"
        c.uidQuota = .percent(12.5)
        c.makeRoomHoldS = 5
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try enc.encode(c), as: UTF8.self)
        #expect(try Config.parse(yaml: text) == c)
        #expect(try Config.parse(yaml: String(decoding: try enc.encode(Config()), as: UTF8.self)) == Config())
    }
}

@Suite("examples/prezerod.yaml")
struct ExampleConfigTests {
    static var text: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("examples/prezerod.yaml"), encoding: .utf8)) ?? ""
    }

    @Test func theShippedExampleParsesToTheDefaults() throws {
        #expect(!Self.text.isEmpty)
        #expect(try Config.parse(yaml: Self.text) == Config())
    }

    @Test func uncommentedItStillParsesToTheDefaults() throws {
        let uncommented = Self.text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("# /etc") && !$0.hasPrefix("# this file") }
            .map { $0.hasPrefix("# ") ? String($0.dropFirst(2)) : String($0) }
            .filter { !$0.hasPrefix("mounts:") && !$0.hasPrefix("  - path") && !$0.hasPrefix("    ") }
            .joined(separator: "\n")
        var expected = Config()
        expected.mounts = []
        #expect(try Config.parse(yaml: uncommented) == expected, "\(uncommented)")
    }

    @Test func itNamesEveryKey() {
        for key in Config.CodingKeys.allCases { #expect(Self.text.contains("# \(key.stringValue):"), "\(key.stringValue)") }
    }
}
