import ArgumentParser
import Foundation
import PrezeroBench
import PrezeroClient
import PrezeroCore
import PrezeroHookHandler
import PrezeroLibvirtModel
import PrezeroLab
import PrezeroLibvirt
import PrezeroHost
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

struct BenchLibvirt: ParsableCommand, BenchOutput {
    static let configuration = CommandConfiguration(
        commandName: "libvirt",
        abstract: "Domain start through libvirt: prezero's hand-over against the best stock configuration, the start floor, and the hook's overhead.",
        discussion: """
            Needs a host set up for prezero: libvirtd running with the hook installed, prezerod running, \
            and qemu.conf's memory_backing_dir on a pool mount whose pool can hold SIZE + SMALL clean \
            (`prezero libvirt doctor` checks all of it; `make bench-libvirt` sets up a private one). \
            Defines its own domains (prezero-bench-*), type kvm where QEMU can use KVM (`prezero accel \
            --libvirt`), else qemu (TCG); starts each through libvirt's API (what virsh start calls), and \
            undefines them at the end. After one untimed round, --runs rounds time:
              stock          <hugepages/> of SIZE: QEMU preallocates on one thread; the kernel zeroes every page
              stock threads  the best stock form: the same with <allocation mode='immediate' threads='N'/> (QEMU \
            prealloc-threads=N) and bound to the host's first node, so that libvirt adds a thread-context there
              hand-over      the same guest in the eligible form, given a pre-zeroed file
              small          the hand-over at SMALL
              floor          the same guest on ordinary RAM without prealloc: a start that zeroes nothing
              hook           a guest without huge pages: with the hook, with /bin/true in its place, and with none
            Ratios: speedup = stock / hand-over; speedup_vs_threads = stock threads / hand-over; \
            size_independence = hand-over / small (target ≤ 1.10); handover_vs_floor = hand-over / floor \
            (target ≤ 1.05); hook_overhead_ms = the median of (hook − no hook) over the pairs (target ≤ 5, \
            the upper end of its 95% interval ≤ 10); noop_hook_overhead_ms is the same A/B with /bin/true as \
            the hook, what libvirt's forking of any hook costs. hook_exec_ms times the hook's three start calls run \
            directly. --boot also times each of stock, stock threads and hand-over from virDomainCreate \
            until the guest's /init writes its marker on the serial console.
            """)

    @OptionGroup var options: StartBenchOptions
    @Option(name: .long, help: "Instead: stock, stock threads and hand-over at each of these sizes, e.g. 1G,2G,4G,8G,16G.")
    var sizes: SizeList?
    @Option(name: .long, help: "With --sizes: draw start time against guest size to this SVG file.")
    var plot: String?
    @Option(name: .long, help: "Preallocation threads of the threaded stock start (default: the host's online CPUs).")
    var threads: Int?
    @Option(name: .long, help: "Rounds of three starts: with the hook, with /bin/true in its place, with none (default 100).")
    var hookPairs: Int = 100
    @Flag(name: .long, help: "Also time virsh restore of a saved guest: stock, stock threads=N, hand-over.")
    var restore = false
    @Option(name: .long, help: "The page size the pool mount must have: 2M or 1G (default: whatever memory_backing_dir's mount has).")
    var pageSize: PageSize?
    @Flag(name: .long, help: "Also time the boot to guest userspace (needs --kernel and --initrd; `make bench-libvirt BENCH_ARGS=--boot` builds them).")
    var boot = false
    @Option(name: .long, help: "With --boot: the guest kernel.")
    var kernel: String?
    @Option(name: .long, help: "With --boot: an initramfs whose /init writes \(GuestDomain.Boot.marker) on ttyS0.")
    var initrd: String?
    @OptionGroup var libvirt: LibvirtOptions
    @OptionGroup var connection: Connection

    var json: Bool { options.json }
    var runs: Int { options.runs }

    func validate() throws {
        guard hookPairs >= 5 else { throw ValidationError("--hook-pairs must be at least 5") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if boot, kernel == nil || initrd == nil { throw ValidationError("--boot needs --kernel and --initrd (scripts/boot-guest.sh DIR builds both)") }
    }

    struct Result: Codable {
        var accel: String
        var bootAccel: String?
        var pageSize: UInt64
        var hugepagesReserved: UInt64
        var threads: Int
        var sizeBytes: UInt64
        var smallBytes: UInt64
        var runs: Int
        var startStockS: Double
        var startStockThreadsS: Double
        var startHandoverS: Double
        var startSmallS: Double
        var startFloorS: Double
        var speedup: Double
        var speedupVsThreads: Double
        var sizeIndependence: Double
        var handoverVsFloor: Double
        var hookPairs: Int
        var hookOverheadMs: Double
        /// ~95% confidence interval of hook_overhead_ms: whether the A/B can resolve the target at all.
        var hookOverheadCI95Ms: [Double]
        var hookExecMs: Double
        /// The same A/B with /bin/true as the hook: what libvirt's running of any hook costs a start.
        var noopHookOverheadMs: Double
        var noopHookOverheadCI95Ms: [Double]
        var bootStockS: Double?
        var bootStockThreadsS: Double?
        var bootHandoverS: Double?
        var restoreStockS: Double?
        var restoreStockThreadsS: Double?
        var restoreHandoverS: Double?
        /// The faster stock restore / the hand-over restore.
        var restoreSpeedupVsThreads: Double?
        /// Every figure above as median, min, max and runs, under the same key.
        var spreads: [String: Spread]

        enum CodingKeys: String, CodingKey {
            case accel, threads, runs, speedup, spreads
            case bootAccel = "boot_accel", pageSize = "page_size", hugepagesReserved = "hugepages_reserved"
            case sizeBytes = "size_bytes", smallBytes = "small_bytes", startStockS = "start_stock_s"
            case startStockThreadsS = "start_stock_threads_s", startHandoverS = "start_handover_s", startSmallS = "start_small_s"
            case startFloorS = "start_floor_s", speedupVsThreads = "speedup_vs_threads", sizeIndependence = "size_independence"
            case handoverVsFloor = "handover_vs_floor", hookPairs = "hook_pairs"
            case hookOverheadMs = "hook_overhead_ms", hookExecMs = "hook_exec_ms", hookOverheadCI95Ms = "hook_overhead_ci95_ms"
            case noopHookOverheadMs = "noop_hook_overhead_ms", noopHookOverheadCI95Ms = "noop_hook_overhead_ci95_ms"
            case bootStockS = "boot_stock_s", bootStockThreadsS = "boot_stock_threads_s", bootHandoverS = "boot_handover_s"
            case restoreStockS = "restore_stock_s", restoreStockThreadsS = "restore_stock_threads_s", restoreHandoverS = "restore_handover_s"
            case restoreSpeedupVsThreads = "restore_speedup_vs_threads"
        }
    }

    struct SweepPoint: Codable {
        var sizeBytes: UInt64
        var stock: Spread
        var stockThreads: Spread
        var handover: Spread
        enum CodingKeys: String, CodingKey {
            case stock, handover
            case sizeBytes = "size_bytes", stockThreads = "stock_threads"
        }
    }

    struct Sweep: Codable {
        var accel: String
        var pageSize: UInt64
        var threads: Int
        var runs: Int
        var points: [SweepPoint]
        enum CodingKeys: String, CodingKey {
            case accel, threads, runs, points
            case pageSize = "page_size"
        }
    }

    var threadCount: Int { threads ?? HostInfo.onlineCPUs() }

    func openLab() throws -> BenchGuests {
        let lab = try BenchGuests(libvirt: libvirt, connection: connection)
        if let want = pageSize?.bytes, want != lab.pageSize {
            lab.close()
            throw CLIError("--page-size \(ByteSize.format(want)): memory_backing_dir is on a mount of \(ByteSize.format(lab.pageSize)) pages; point it at a pool mount of \(ByteSize.format(want)) pages", code: 2)
        }
        note("bench libvirt: accel: \(lab.accel.accel.rawValue) (\(lab.accel.reason)); \(lab.reservedPages) x \(ByteSize.format(lab.pageSize)) pages reserved on the host")
        return lab
    }

    /// --sizes: the three starts at each size, as a table, JSON and an SVG chart.
    func sweep(_ list: SizeList) throws {
        // Largest first: a smaller guest can always be served by cutting a larger clean file
        // (truncated), while a larger one after smaller ones might find only smaller files.
        let sizes = list.bytes.sorted(by: >)
        let lab = try openLab()
        defer { lab.close() }
        var points: [SweepPoint] = []
        note("bench libvirt: \(sizes.map(ByteSize.format).joined(separator: ", ")) guests, \(runs) runs each after one untimed round")
        for b in sizes {
            guard b % lab.pageSize == 0 else { throw CLIError("--sizes: \(ByteSize.format(b)) is not whole \(ByteSize.format(lab.pageSize)) pages", code: 2) }
            let tag = "\(b >> 20)m"
            let stock = try lab.define("stock-\(tag)", bytes: b, backing: lab.stock())
            let threaded = try lab.define("threads-\(tag)", bytes: b, backing: lab.stock(threads: threadCount), bound: true)
            let handover = try lab.define("handover-\(tag)", bytes: b, backing: BenchGuests.eligible)
            var s: [Double] = [], st: [Double] = [], h: [Double] = []
            for round in 0...runs {
                let ts = try lab.timeStart(stock), tt = try lab.timeStart(threaded), th = try lab.timeStart(handover, handedOver: b)
                guard round > 0 else { continue }
                s.append(ts)
                st.append(tt)
                h.append(th)
            }
            let p = SweepPoint(sizeBytes: b, stock: Spread(s), stockThreads: Spread(st), handover: Spread(h))
            points.append(p)
            note("  \(ByteSize.format(b)): stock \(p.stock.text()) s, threads=\(threadCount) \(p.stockThreads.text()) s, hand-over \(p.handover.text()) s")
        }
        if let plot {
            let gib = { (p: SweepPoint) in Double(p.sizeBytes) / Double(1 << 30) }
            let svg = Chart.svg(
                title: "libvirt domain start against guest size",
                subtitle: "virDomainCreate (what virsh start calls), median of \(runs); \(Self.hostLine(lab.accel.accel))",
                xLabel: "guest memory (GiB)", yLabel: "start time (s)",
                series: [
                    Chart.Series(label: "stock <hugepages/>", color: "#c0392b", points: points.map { (gib($0), $0.stock) }),
                    Chart.Series(label: "stock, threads=\(threadCount)", color: "#e67e22", points: points.map { (gib($0), $0.stockThreads) }),
                    Chart.Series(label: "prezero hand-over", color: "#2471a3", points: points.map { (gib($0), $0.handover) }),
                ],
                xTick: { String(format: $0 < 1 ? "%.2g" : "%.0f", $0) })
            do { try Files.writeText(plot, svg, mode: 0o644) } catch { throw CLIError("cannot write --plot \(plot): \(error)") }
            note("chart written to \(plot)")
        }
        if json {
            printJSON(Sweep(accel: lab.accel.accel.rawValue, pageSize: lab.pageSize, threads: threadCount, runs: runs, points: points))
            return
        }
        print("accel: \(lab.accel.accel.rawValue)")
        print("libvirt start, \(ByteSize.format(lab.pageSize)) pages, median [min–max] over \(runs) runs")
        for p in points.reversed() {
            print("  \(ByteSize.format(p.sizeBytes).padding(toLength: 8, withPad: " ", startingAt: 0))  stock \(p.stock.text()) s   threads=\(threadCount) \(p.stockThreads.text()) s   hand-over \(p.handover.text()) s   speedup_vs_threads \(f(p.stockThreads.median / p.handover.median, 2))×")
        }
    }

    /// The machine a figure was measured on, for the chart.
    static func hostLine(_ accel: Accelerator) -> String {
        let mem = (HostDiscovery.meminfo()).split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { UInt64($0.split(separator: " ")[1]) }.map { ByteSize.format($0 << 10) } ?? "?"
        return "Linux \(HostInfo.kernelRelease()), \(HostInfo.onlineCPUs()) vCPUs, \(mem), QEMU \(accel == .kvm ? "KVM" : "TCG")"
    }

    func run() throws {
        if let sizes {
            return try guarded { try sweep(sizes) }
        }
        guard plot == nil else { throw ValidationError("--plot needs --sizes") }
        try guarded {
            let lab = try openLab()
            defer { lab.close() }
            let (bytes, smallBytes) = try options.sizes(pageSize: lab.pageSize)
            let n = threadCount
            let stock = try lab.define("stock", bytes: bytes, backing: lab.stock())
            let threaded = try lab.define("threads", bytes: bytes, backing: lab.stock(threads: n), bound: true)
            let big = try lab.define("handover", bytes: bytes, backing: BenchGuests.eligible)
            let little = try lab.define("small", bytes: smallBytes, backing: BenchGuests.eligible)
            let floor = try lab.define("floor", bytes: bytes, backing: "")
            let plain = try lab.define("plain", bytes: smallBytes, backing: "")
            note("bench libvirt: \(ByteSize.format(bytes)) and \(ByteSize.format(smallBytes)) guests, \(ByteSize.format(lab.pageSize)) pages, threads=\(n), \(runs) runs after one untimed round")

            var t: [String: [Double]] = [:]
            for round in 0...runs {
                let row = [("start_stock_s", try lab.timeStart(stock)), ("start_stock_threads_s", try lab.timeStart(threaded)),
                           ("start_handover_s", try lab.timeStart(big, handedOver: bytes)),
                           ("start_small_s", try lab.timeStart(little, handedOver: smallBytes)), ("start_floor_s", try lab.timeStart(floor))]
                record(row, round: round, into: &t, prefix: "start")
            }
            if boot, let kernel, let initrd {
                note("bench libvirt: boot accel: \(lab.bootAccel.accel.rawValue) (\(lab.bootAccel.reason))")
                let image = (kernel: kernel, initrd: initrd)
                let forms = [("boot_stock_s", "boot-stock", lab.stock(), nil), ("boot_stock_threads_s", "boot-threads", lab.stock(threads: n), nil),
                             ("boot_handover_s", "boot-handover", BenchGuests.eligible, Optional(bytes))]
                let doms = try forms.map { try lab.define($0.1, bytes: bytes, backing: $0.2, boot: image, bound: $0.1 == "boot-threads") }
                for round in 0...runs {
                    let row = try zip(forms, doms).map { ($0.0.0, try lab.timeBoot($0.1, handedOver: $0.0.3)) }
                    record(row, round: round, into: &t, prefix: "boot", label: "boot run")
                }
            }
            if restore {
                let forms = [("restore_stock_s", stock, nil), ("restore_stock_threads_s", threaded, nil), ("restore_handover_s", big, Optional(bytes))]
                for round in 0...runs {
                    let row = try forms.map { ($0.0, try lab.timeRestore($0.1, handedOver: $0.2)) }
                    record(row, round: round, into: &t, prefix: "restore", label: "restore run")
                }
            }
            note("  hook: \(hookPairs) rounds of three starts of a guest without huge pages: with the hook, with /bin/true in its place, with none; the order rotates")
            var pairs: [Double] = [], noopPairs: [Double] = []
            for round in 0...hookPairs {
                // The three arms back to back, in an order that rotates each round.
                var got: [String: Double] = [:]
                for arm in (0..<3).map({ ["hook", "nohook", "noop"][($0 + round) % 3] }) {
                    switch arm {
                    case "hook": got[arm] = try lab.timeStart(plain)
                    case "nohook": got[arm] = try lab.withHookAside { try lab.timeStart(plain) }
                    default: got[arm] = try lab.withHookAside(noop: true) { try lab.timeStart(plain) }
                    }
                }
                guard round > 0, let with = got["hook"], let without = got["nohook"], let noop = got["noop"] else { continue }
                t["start_hook_s", default: []].append(with)
                t["start_nohook_s", default: []].append(without)
                t["start_noop_hook_s", default: []].append(noop)
                pairs.append(with - without)
                noopPairs.append(noop - without)
            }
            t["hook_exec_s"] = try lab.timeHookCalls(plain, times: 20)
            let sp = t.mapValues(Spread.init)
            let m = { (k: String) in sp[k]?.median ?? 0 }
            let ci = Spread.medianInterval(pairs), noopCI = Spread.medianInterval(noopPairs)
            let r = Result(accel: lab.accel.accel.rawValue, bootAccel: boot ? lab.bootAccel.accel.rawValue : nil, pageSize: lab.pageSize, hugepagesReserved: lab.reservedPages, threads: n,
                           sizeBytes: bytes, smallBytes: smallBytes, runs: runs,
                           startStockS: m("start_stock_s"), startStockThreadsS: m("start_stock_threads_s"), startHandoverS: m("start_handover_s"),
                           startSmallS: m("start_small_s"), startFloorS: m("start_floor_s"),
                           speedup: m("start_stock_s") / m("start_handover_s"), speedupVsThreads: m("start_stock_threads_s") / m("start_handover_s"),
                           sizeIndependence: m("start_handover_s") / m("start_small_s"), handoverVsFloor: m("start_handover_s") / m("start_floor_s"),
                           hookPairs: hookPairs,
                           // Each pair ran back to back: the median of the differences is steadier than the difference of medians.
                           hookOverheadMs: Spread(pairs).median * 1000, hookOverheadCI95Ms: [ci.low * 1000, ci.high * 1000],
                           hookExecMs: m("hook_exec_s") * 1000,
                           noopHookOverheadMs: Spread(noopPairs).median * 1000, noopHookOverheadCI95Ms: [noopCI.low * 1000, noopCI.high * 1000],
                           bootStockS: sp["boot_stock_s"]?.median, bootStockThreadsS: sp["boot_stock_threads_s"]?.median,
                           bootHandoverS: sp["boot_handover_s"]?.median,
                           restoreStockS: sp["restore_stock_s"]?.median, restoreStockThreadsS: sp["restore_stock_threads_s"]?.median,
                           restoreHandoverS: sp["restore_handover_s"]?.median,
                           restoreSpeedupVsThreads: restore ? min(m("restore_stock_s"), m("restore_stock_threads_s")) / m("restore_handover_s") : nil,
                           spreads: sp)
            if json {
                printJSON(r)
                return
            }
            let sz = ByteSize.format(bytes), sm = ByteSize.format(smallBytes)
            func row(_ label: String, _ key: String) -> String { figureRow(label, sp[key], width: 34) }
            var out = [
                "accel: \(r.accel)",
                "libvirt start (virDomainCreate, what virsh start calls), \(ByteSize.format(lab.pageSize)) pages, median [min–max] over \(runs) runs",
                row("stock <hugepages/>, \(sz)", "start_stock_s"),
                row("stock <hugepages/>, threads=\(n), \(sz)", "start_stock_threads_s"),
                row("handed over, \(sz)", "start_handover_s"),
                row("handed over, \(sm)", "start_small_s"),
                row("floor: ordinary RAM, \(sz)", "start_floor_s"),
                "  speedup             stock / hand-over          \(f(r.speedup, 2))×",
                "  speedup_vs_threads  threads=\(n) / hand-over      \(f(r.speedupVsThreads, 2))×",
                "  size_independence   \(sz) / \(sm) hand-over   \(f(r.sizeIndependence, 3))×  (target ≤ 1.10)",
                "  handover_vs_floor   hand-over / floor          \(f(r.handoverVsFloor, 3))×  (target ≤ 1.05)",
            ]
            if boot {
                out += ["boot to guest userspace (virDomainCreate until /init's marker on ttyS0), accel: \(lab.bootAccel.accel.rawValue), median [min–max] over \(runs) runs",
                        row("stock <hugepages/>", "boot_stock_s"), row("stock, threads=\(n)", "boot_stock_threads_s"),
                        row("handed over", "boot_handover_s")]
            }
            if restore, let x = r.restoreSpeedupVsThreads {
                out += ["virsh restore of a saved guest (virDomainRestore), median [min–max] over \(runs) runs",
                        row("stock <hugepages/>, \(sz)", "restore_stock_s"), row("stock, threads=\(n), \(sz)", "restore_stock_threads_s"),
                        row("handed over, \(sz)", "restore_handover_s"),
                        "  restore_speedup_vs_threads  faster stock / hand-over  \(f(x, 2))×"]
            }
            out += [
                "hook overhead, guest without huge pages, \(hookPairs) rounds of three starts",
                row("with the hook", "start_hook_s"),
                row("with /bin/true as the hook", "start_noop_hook_s"),
                row("without a hook", "start_nohook_s"),
                "  hook_overhead_ms    \(f(r.hookOverheadMs, 1)) ms, 95% CI [\(f(r.hookOverheadCI95Ms[0], 1)), \(f(r.hookOverheadCI95Ms[1], 1))] ms  (median of the paired differences; target ≤ 5, CI upper ≤ 10)",
                "  noop_hook_overhead_ms \(f(r.noopHookOverheadMs, 1)) ms, 95% CI [\(f(r.noopHookOverheadCI95Ms[0], 1)), \(f(r.noopHookOverheadCI95Ms[1], 1))] ms  (/bin/true − none: libvirt's cost of running any hook)",
                "  hook_exec_ms        \(f(r.hookExecMs, 2)) ms  (prepare + start + started begin, run directly, median of 20)",
            ]
            print(out.joined(separator: "\n"))
        }
    }
}
