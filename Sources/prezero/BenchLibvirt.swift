import ArgumentParser
import Foundation
import PrezeroClient
import PrezeroCore
import PrezeroLibvirt
import PrezeroSys

struct BenchLibvirt: ParsableCommand, BenchOutput {
    static let configuration = CommandConfiguration(
        commandName: "libvirt",
        abstract: "Domain start through libvirt: stock <hugepages/> against a hand-over, at two sizes, and the hook's overhead.",
        discussion: """
            Needs a host set up for prezero: libvirtd running with the hook installed, prezerod running, \
            and qemu.conf's memory_backing_dir on a pool mount whose pool can hold SIZE + SMALL clean \
            (`prezero libvirt doctor` checks all of it; `make bench-libvirt` sets up a private one). \
            Defines its own domains (prezero-bench-*), starts each through libvirt's API (what virsh start \
            calls), and undefines them at the end. After one untimed round, --runs rounds time:
              stock       a <hugepages/> guest of SIZE: QEMU's pages are zeroed at start
              hand-over   the same guest in the eligible form, given a pre-zeroed file
              small       the hand-over at SMALL: the cost of a start without memory
              hook        a guest without huge pages, with the hook and with it moved aside
            Ratios: speedup = stock / hand-over; size_independence = hand-over / small (target ≤ 1.15); \
            hook_overhead_ms = the median of (hook − no hook) over back-to-back pairs (target ≤ 10). hook_exec_ms times the hook's three start \
            calls run directly, which the start difference measures through noise.
            """)

    @OptionGroup var options: StartBenchOptions
    @Option(name: .long, help: "Instead: stock against hand-over at each of these sizes, e.g. 1G,2G,4G,8G.")
    var sizes: String?
    @Option(name: .long, help: "With --sizes: draw launch time against guest size to this SVG file.")
    var plot: String?
    @OptionGroup var libvirt: LibvirtOptions
    @OptionGroup var connection: Connection

    var json: Bool { options.json }
    var runs: Int { options.runs }

    struct Result: Codable {
        var sizeBytes: UInt64
        var smallBytes: UInt64
        var runs: Int
        var startStockS: Double
        var startHandoverS: Double
        var startSmallS: Double
        var speedup: Double
        var sizeIndependence: Double
        var hookOverheadMs: Double
        /// ~95% confidence interval of hook_overhead_ms: whether the A/B can resolve the target at all.
        var hookOverheadCI95Ms: [Double]
        var hookExecMs: Double
        var spreads: [String: Spread]

        enum CodingKeys: String, CodingKey {
            case runs, speedup, spreads
            case sizeBytes = "size_bytes", smallBytes = "small_bytes", startStockS = "start_stock_s"
            case startHandoverS = "start_handover_s", startSmallS = "start_small_s", sizeIndependence = "size_independence"
            case hookOverheadMs = "hook_overhead_ms", hookExecMs = "hook_exec_ms", hookOverheadCI95Ms = "hook_overhead_ci95_ms"
        }
    }

    struct SweepPoint: Codable {
        var sizeBytes: UInt64
        var stock: Spread
        var handover: Spread
        enum CodingKeys: String, CodingKey {
            case stock, handover
            case sizeBytes = "size_bytes"
        }
    }

    /// --sizes: stock against hand-over at each size, as a table, JSON and an SVG chart.
    func sweep(_ list: String) throws {
        // Largest first: a smaller guest can always be served by cutting a larger clean file
        // (truncated), while a larger one after smaller ones might find only smaller files.
        let sizes = try list.split(separator: ",").map { try parseSize(String($0), what: "--sizes") }.sorted(by: >)
        let lab = try LibvirtLab(libvirt: libvirt, connection: connection)
        defer { lab.close() }
        var points: [SweepPoint] = []
        note("bench libvirt: \(sizes.map(ByteSize.format).joined(separator: ", ")) guests, \(runs) runs each after one untimed round")
        for b in sizes {
            guard b % lab.pageSize == 0 else { throw CLIError("--sizes: \(ByteSize.format(b)) is not whole \(ByteSize.format(lab.pageSize)) pages", code: 2) }
            let stock = try lab.define("stock-\(b >> 20)m", bytes: b, backing: lab.stock)
            let handover = try lab.define("handover-\(b >> 20)m", bytes: b, backing: LibvirtLab.eligible)
            var s: [Double] = [], h: [Double] = []
            for round in 0...runs {
                let ts = try lab.timeStart(stock), th = try lab.timeStart(handover, handedOver: b)
                guard round > 0 else { continue }
                s.append(ts)
                h.append(th)
            }
            points.append(SweepPoint(sizeBytes: b, stock: Spread(s), handover: Spread(h)))
            note("  \(ByteSize.format(b)): stock \(points.last!.stock.text()) s, hand-over \(points.last!.handover.text()) s")
        }
        if let plot {
            let svg = Chart.svg(
                title: "libvirt domain start against guest size",
                subtitle: "virDomainCreate (what virsh start calls), median of \(runs); \(Self.hostLine())",
                xLabel: "guest memory (GiB)", yLabel: "start time (s)",
                series: [
                    Chart.Series(label: "stock <hugepages/>", color: "#c0392b", points: points.map { (Double($0.sizeBytes) / Double(1 << 30), $0.stock) }),
                    Chart.Series(label: "prezero hand-over", color: "#2471a3", points: points.map { (Double($0.sizeBytes) / Double(1 << 30), $0.handover) }),
                ],
                xTick: { String(format: $0 < 1 ? "%.2g" : "%.0f", $0) })
            do { try Files.writeText(plot, svg) } catch { throw CLIError("cannot write --plot \(plot): \(error)") }
            note("chart written to \(plot)")
        }
        if json {
            printJSON(points)
            return
        }
        print("libvirt start, median [min–max] over \(runs) runs")
        for p in points.reversed() {
            print("  \(ByteSize.format(p.sizeBytes).padding(toLength: 8, withPad: " ", startingAt: 0))  stock \(p.stock.text()) s   hand-over \(p.handover.text()) s   speedup \(f(p.stock.median / p.handover.median, 2))×")
        }
    }

    /// The machine a figure was measured on, for the chart.
    static func hostLine() -> String {
        let mem = (Files.readText("/proc/meminfo") ?? "").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { UInt64($0.split(separator: " ")[1]) }.map { ByteSize.format($0 << 10) } ?? "?"
        return "Linux \(HostInfo.kernelRelease()), \(HostInfo.onlineCPUs()) vCPUs, \(mem), QEMU TCG"
    }

    func run() throws {
        if let sizes {
            return try guarded { try sweep(sizes) }
        }
        guard plot == nil else { throw ValidationError("--plot needs --sizes") }
        try guarded {
            let (bytes, smallBytes) = try options.sizes()
            let lab = try LibvirtLab(libvirt: libvirt, connection: connection)
            defer { lab.close() }
            guard bytes % lab.pageSize == 0, smallBytes % lab.pageSize == 0 else {
                throw CLIError("--size and --small must be whole \(ByteSize.format(lab.pageSize)) pages", code: 2)
            }
            let stock = try lab.define("stock", bytes: bytes, backing: lab.stock)
            let big = try lab.define("handover", bytes: bytes, backing: LibvirtLab.eligible)
            let little = try lab.define("small", bytes: smallBytes, backing: LibvirtLab.eligible)
            let plain = try lab.define("plain", bytes: smallBytes, backing: "")
            note("bench libvirt: \(ByteSize.format(bytes)) and \(ByteSize.format(smallBytes)) guests, \(ByteSize.format(lab.pageSize)) pages, \(runs) runs after one untimed round")

            var t: [String: [Double]] = [:]
            let hookPairs = max(runs, 30)
            for round in 0...runs {
                let s = try lab.timeStart(stock)
                let h = try lab.timeStart(big, handedOver: bytes)
                let m = try lab.timeStart(little, handedOver: smallBytes)
                guard round > 0 else { continue }
                t["stock", default: []].append(s)
                t["handover", default: []].append(h)
                t["small", default: []].append(m)
                note("  run \(round): stock \(f(s)) s, hand-over \(f(h)) s, small \(f(m)) s")
            }
            note("  hook: \(hookPairs) starts of a guest without huge pages with the hook, and as many without")
            for round in 0...hookPairs {
                let with = try lab.timeStart(plain)
                let without = try lab.withHookAside { try lab.timeStart(plain) }
                guard round > 0 else { continue }
                t["hook", default: []].append(with)
                t["nohook", default: []].append(without)
            }
            let exec = try lab.timeHookCalls(plain, times: 20)
            let sp = t.mapValues(Spread.init).merging(["hook_exec": Spread(exec)]) { a, _ in a }
            let pairs = zip(t["hook"]!, t["nohook"]!).map { $0 - $1 }
            let ci = Spread.medianInterval(pairs)
            let r = Result(sizeBytes: bytes, smallBytes: smallBytes, runs: runs,
                           startStockS: sp["stock"]!.median, startHandoverS: sp["handover"]!.median, startSmallS: sp["small"]!.median,
                           speedup: sp["stock"]!.median / sp["handover"]!.median,
                           sizeIndependence: sp["handover"]!.median / sp["small"]!.median,
                           // Each pair ran back to back: the median of the differences is steadier than the difference of medians.
                           hookOverheadMs: Spread(pairs).median * 1000,
                           hookOverheadCI95Ms: [ci.low * 1000, ci.high * 1000],
                           hookExecMs: sp["hook_exec"]!.median * 1000, spreads: sp)
            if json {
                printJSON(r)
                return
            }
            print("""
                libvirt start (virDomainCreate, what virsh start calls), median [min–max] over \(runs) runs
                  stock <hugepages/>, \(ByteSize.format(bytes))       \(sp["stock"]!.text()) s
                  handed over, \(ByteSize.format(bytes))              \(sp["handover"]!.text()) s
                  handed over, \(ByteSize.format(smallBytes))            \(sp["small"]!.text()) s
                  speedup            stock / hand-over   \(f(r.speedup, 2))×
                  size_independence  \(ByteSize.format(bytes)) / \(ByteSize.format(smallBytes))   \(f(r.sizeIndependence, 3))×  (target ≤ 1.15)
                hook overhead, guest without huge pages, \(hookPairs) pairs
                  with the hook      \(sp["hook"]!.text()) s
                  without            \(sp["nohook"]!.text()) s
                  hook_overhead_ms   \(f(r.hookOverheadMs, 1)) ms, 95% CI [\(f(r.hookOverheadCI95Ms[0] , 1)), \(f(r.hookOverheadCI95Ms[1], 1))] ms  (median of the paired differences; target ≤ 10)
                  hook_exec_ms       \(f(r.hookExecMs, 2)) ms  (prepare + start + started begin, run directly, median of 20)
                """)
        }
    }

}

/// The host as the libvirt bench finds it, checked, and the domains it defines,
/// undefined again by `close()`.
final class LibvirtLab {
    static let eligible = "<source type='file'/><access mode='shared'/><allocation mode='immediate'/>"
    let conn: LibvirtConnection
    let connection: Connection
    let mount: String
    let pageSize: UInt64
    let hook: String
    let hookAside: String
    var domains: [String] = []

    /// The stock form of the same guest: huge pages of the pool's size, zeroed by QEMU at start.
    var stock: String { "<hugepages><page size='\(pageSize >> 10)' unit='KiB'/></hugepages>" }

    init(libvirt: LibvirtOptions, connection: Connection) throws {
        hook = libvirt.hooksDir + "/prezero"
        // Beside qemu.d, not in it: libvirt runs every file in qemu.d.
        hookAside = (libvirt.hooksDir as NSString).deletingLastPathComponent + "/prezero.bench-aside"
        // A bench that was killed with the hook moved aside puts it back first.
        if Files.status(followingPath: hook) == nil, Files.status(followingPath: hookAside) != nil {
            try? Files.renamePath(hookAside, hook)
        }
        guard Files.status(followingPath: hook) != nil else {
            throw CLIError("no hook at \(hook); run `prezero install` and restart libvirtd (`prezero libvirt doctor` checks the setup)")
        }
        self.connection = connection
        let status = try connection.send(Request(op: .status)).status!
        let host = HookHost(conf: QemuConf.parse(Files.readText(libvirt.qemuConf) ?? ""), meminfo: Files.readText("/proc/meminfo") ?? "",
                            poolMounts: status.mounts.map { ($0.path, $0.pageSize) })
        guard let m = host.backingMount else {
            throw CLIError("memory_backing_dir in \(libvirt.qemuConf) is not on a pool mount; `prezero libvirt doctor` says what to change")
        }
        (mount, pageSize) = m
        conn = try libvirt.open()
    }

    func define(_ role: String, bytes: UInt64, backing: String) throws -> String {
        let name = "prezero-bench-\(role)-\(getpid())"
        let xml = """
            <domain type='qemu'>
              <name>\(name)</name>
              <uuid>\(UUID().uuidString.lowercased())</uuid>
              <memory unit='KiB'>\(bytes >> 10)</memory>
              <memoryBacking>\(backing)</memoryBacking>
              <vcpu>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
              <on_poweroff>destroy</on_poweroff>
              <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
            </domain>
            """
        try libvirtCall { () throws(LibvirtError) in try conn.define(xml) }
        domains.append(name)
        return name
    }

    func settle() throws { try settlePool(connection, mount: mount) }

    /// Seconds libvirt takes to start `name`; then destroys it. A hand-over that did not
    /// happen is an error, never a figure.
    func timeStart(_ name: String, handedOver: UInt64? = nil) throws -> Double {
        try settle()
        let t = monotonicSeconds()
        try libvirtCall { () throws(LibvirtError) in try conn.start(name) }
        let took = monotonicSeconds() - t
        defer { try? conn.destroy(name) }
        if let want = handedOver {
            let leased = (try? connection.client.send(Request(op: .status)).status!)?.mounts.first { $0.path == mount }?.nodes
                .reduce(0) { $0 + $1.leasedBytes } ?? 0
            guard leased >= want else {
                throw CLIError("\(name) was not handed over (\(ByteSize.format(leased)) leased); prezerod's log says why. Is the pool's target at least \(ByteSize.format(want))?")
            }
        }
        return took
    }

    /// Runs `body` with the hook moved out of libvirt's hook directory, and puts it back.
    func withHookAside<T>(_ body: () throws -> T) throws -> T {
        do {
            try Files.renamePath(hook, hookAside)
        } catch {
            throw CLIError("cannot move the hook aside: \(error)")
        }
        defer { try? Files.renamePath(hookAside, hook) }
        return try body()
    }

    /// The hook's three calls at a start (prepare, start, started begin) run directly,
    /// with the domain's XML on stdin as libvirt gives it: seconds for the three.
    func timeHookCalls(_ name: String, times: Int) throws -> [Double] {
        let xml = try libvirtCall { () throws(LibvirtError) in try conn.xml(name) }
            .replacingOccurrences(of: "<domain type='qemu'>", with: "<domain type='qemu' id='999999'>")
        let input = "/tmp/prezero-bench-\(getpid()).xml"
        do {
            try Files.writeText(input, xml)
        } catch {
            throw CLIError("cannot write \(input): \(error)")
        }
        defer { try? Files.removePath(input) }
        var out: [Double] = []
        for _ in 0..<times {
            let t = monotonicSeconds()
            for call in [["prepare", "begin"], ["start", "begin"], ["started", "begin"]] {
                do {
                    try ChildProcess([hook, name] + call + ["-"], stdin: input).wait()
                } catch {
                    throw CLIError("cannot run the hook \(hook): \(error)")
                }
            }
            out.append(monotonicSeconds() - t)
        }
        return out
    }

    func close() {
        if Files.status(followingPath: hook) == nil { try? Files.renamePath(hookAside, hook) }
        for d in domains {
            try? conn.destroy(d)
            try? conn.undefine(d)
        }
        domains = []
    }
}

/// Waits for the pool on `mount` to be back at its target with nothing leased, dirty or
/// filling, so that no start is timed against the pool's own work.
func settlePool(_ connection: Connection, mount: String) throws {
    let deadline = monotonicSeconds() + 300
    while true {
        let s = try connection.send(Request(op: .status)).status!
        let nodes = s.mounts.first { $0.path == mount }?.nodes ?? []
        let busy = nodes.reduce(0) { $0 + $1.dirtyBytes + $1.scrubbingBytes + $1.fillingBytes + $1.leasedBytes }
        if busy == 0 && nodes.allSatisfy({ $0.cleanBytes >= min($0.targetBytes, $0.totalBytes - $0.minFreeBytes) }) { return }
        guard monotonicSeconds() < deadline else {
            throw CLIError("the pool on \(mount) did not settle in 300 s (clean, nothing dirty or filling); see `prezero status`")
        }
        sleepSeconds(0.1)
    }
}
