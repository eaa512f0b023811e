import ArgumentParser
import Foundation
import Glibc
import PrezeroBench
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

struct BenchLaunch: ParsableCommand, BenchOutput {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "QEMU started directly: fresh hugetlbfs files, preallocated the best ways QEMU offers, against one handed over by prezero launch.",
        discussion: """
            Needs prezerod running with a pool of SIZE + SMALL clean on a 2 MiB or 1 GiB mount with room \
            for one more SIZE (`make bench-launch` sets up a private one). QEMU runs under KVM where it \
            can (`prezero accel`), else TCG. Each start is timed from the spawn until QEMU answers \
            query-status on QMP, then QEMU is stopped; after one untimed round, --runs rounds time:
              stock          memory-backend-file on a fresh file of SIZE, prealloc=on: one thread zeroes every page
              stock threads  the same with prealloc-threads=N
              stock context  prealloc-threads=N in a thread-context bound to node 0, the guest's memory bound there too
              prezero        the same command through prezero launch: a pre-zeroed file
              small          the prezero start at SMALL
              floor          memory-backend-ram of SIZE without prealloc: a start that zeroes nothing
            Ratios: speedup = stock / prezero; speedup_vs_threads = the faster threaded stock / prezero; \
            size_independence = prezero / small (target ≤ 1.10).

            With --incoming every QEMU is a migration destination (-incoming defer): the time is until it \
            answers query-status with "inmigrate", ready for the migration stream, its memory allocated.
            """)

    @OptionGroup var options: StartBenchOptions
    @Option(name: .long, help: "The QEMU binary.")
    var qemu: String = "qemu-system-x86_64"
    @Option(name: .long, help: "Preallocation threads of the threaded stock starts (default: the host's online CPUs).")
    var threads: Int?
    @Option(name: .long, help: "The page size the pool mount must have: 2M or 1G (default: the first pool mount's).")
    var pageSize: PageSize?
    @Flag(name: .long, help: "Time migration destinations (-incoming defer): ready to receive, not booting.")
    var incoming = false
    @OptionGroup var connection: Connection

    var json: Bool { options.json }
    var runs: Int { options.runs }

    struct Result: Codable {
        var accel: String
        var incoming: Bool
        var pageSize: UInt64
        var hugepagesReserved: UInt64
        var threads: Int
        var sizeBytes: UInt64
        var smallBytes: UInt64
        var runs: Int
        var startStockS: Double
        var startStockThreadsS: Double
        var startStockThreadContextS: Double
        var startPrezeroS: Double
        var startSmallS: Double
        var startFloorS: Double
        var speedup: Double
        var speedupVsThreads: Double
        var sizeIndependence: Double
        var prezeroVsFloor: Double
        /// Every figure above as median, min, max and runs, under the same key.
        var spreads: [String: Spread]

        enum CodingKeys: String, CodingKey {
            case accel, incoming, threads, runs, speedup, spreads
            case pageSize = "page_size", hugepagesReserved = "hugepages_reserved"
            case sizeBytes = "size_bytes", smallBytes = "small_bytes", startStockS = "start_stock_s"
            case startStockThreadsS = "start_stock_threads_s", startStockThreadContextS = "start_stock_thread_context_s"
            case startPrezeroS = "start_prezero_s", startSmallS = "start_small_s", startFloorS = "start_floor_s"
            case speedupVsThreads = "speedup_vs_threads", sizeIndependence = "size_independence", prezeroVsFloor = "prezero_vs_floor"
        }
    }

    func run() throws {
        try guarded {
            let status = try connection.status()
            guard let mount = status.mounts.first else { throw CLIError("prezerod has no pool mount") }
            if let want = pageSize?.bytes, want != mount.pageSize {
                throw CLIError("--page-size \(ByteSize.format(want)): prezerod's pool mount \(mount.path) has \(ByteSize.format(mount.pageSize)) pages", code: 2)
            }
            let (bytes, smallBytes) = try options.sizes(pageSize: mount.pageSize)
            let accel = HostAccelerator.forDirectQEMU()
            let n = threads ?? HostInfo.onlineCPUs()
            let reserved = HugePageCounters.host(pageSize: mount.pageSize)?.total ?? 0
            let work = "/tmp/prezero-bench-launch-\(Processes.current())"
            do { try Files.makeDirectories(work, mode: 0o700) } catch { throw CLIError("cannot make \(work): \(error)") }
            defer { _ = try? ChildProcess(["rm", "-rf", work]).wait() }
            note("bench launch: accel: \(accel.accel.rawValue) (\(accel.reason)); \(reserved) x \(ByteSize.format(mount.pageSize)) pages reserved on the host")
            note("bench launch: \(ByteSize.format(bytes)) and \(ByteSize.format(smallBytes)) guests on \(mount.path), threads=\(n), \(runs) runs after one untimed round")

            /// QEMU's arguments for a guest of `b` bytes whose memory backend is `backend` (its id m0).
            func qemuArgs(_ b: UInt64, backend: String, extra: [String] = []) -> [String] {
                [qemu, "-accel", accel.accel.rawValue, "-nodefaults", "-nographic", "-display", "none", "-m", "\(b >> 20)M"]
                    + extra + ["-object", backend, "-machine", "pc,memory-backend=m0", "-qmp", "unix:{qmp},server=on,wait=off"]
                    + (incoming ? ["-incoming", "defer"] : [])
            }
            func fileBackend(_ b: UInt64, _ path: String, _ more: String = "") -> String {
                "memory-backend-file,id=m0,mem-path=\(path),size=\(b),share=on,prealloc=on" + more
            }
            /// Seconds from spawn to QMP's answer; then the VMM (or the launcher) is stopped.
            func timeStart(_ args: [String], label: String) throws -> Double {
                try settlePool(connection, mount: mount.path)
                let qmp = work + "/qmp-\(label)"
                let t = monotonicSeconds()
                let p: ChildProcess
                do { p = try ChildProcess(args.map { $0.replacingOccurrences(of: "{qmp}", with: qmp) }, stderr: work + "/\(label).err") } catch { throw CLIError("cannot start \(args[0]): \(error)") }
                let up = QMP.waitReady(socket: qmp, timeout: 120) { p.isRunning }
                let took = monotonicSeconds() - t
                if up && incoming, let s = try? QMP.queryStatus(socket: qmp), s != "inmigrate" {
                    p.signal(SIGKILL)
                    _ = try? p.wait(timeout: 60)
                    throw CLIError("\(label): QEMU started with -incoming defer reports \(s), not inmigrate")
                }
                p.signal(SIGTERM)
                _ = try? p.wait(timeout: 60)
                try? Files.removePath(qmp)
                guard up else {
                    let err = Files.readText(work + "/\(label).err") ?? ""
                    throw CLIError("\(label): QEMU did not answer on QMP: \(err.split(separator: "\n").last ?? "no message")")
                }
                return took
            }
            let fresh = mount.path + "/prezero-bench-stock.\(Processes.current())"
            let launch = { (b: UInt64) in
                [Binaries.prezero, "launch", "--socket", connection.socket, "--memory", "m0=\(b >> 20)M", "--"]
                    + qemuArgs(b, backend: fileBackend(b, "{prezero:m0}"))
            }
            /// A stock start on a fresh file, which is removed after.
            func stockStart(_ label: String, _ more: String, extra: [String] = []) throws -> Double {
                defer { try? Files.removePath(fresh) }
                return try timeStart(qemuArgs(bytes, backend: fileBackend(bytes, fresh, more), extra: extra), label: label)
            }
            var t: [String: [Double]] = [:]
            for round in 0...runs {
                let row = [
                    ("start_stock_s", try stockStart("stock", "")),
                    ("start_stock_threads_s", try stockStart("threads", ",prealloc-threads=\(n)")),
                    // QEMU 7.2's way for a guest bound to a node: the preallocation threads are created
                    // in a context pinned to that node's CPUs, so they touch node-local memory.
                    ("start_stock_thread_context_s", try stockStart("context", ",prealloc-threads=\(n),prealloc-context=tc0,host-nodes=0,policy=bind",
                                                                    extra: ["-object", "thread-context,id=tc0,node-affinity=0"])),
                    ("start_prezero_s", try timeStart(launch(bytes), label: "prezero")),
                    ("start_small_s", try timeStart(launch(smallBytes), label: "small")),
                    ("start_floor_s", try timeStart(qemuArgs(bytes, backend: "memory-backend-ram,id=m0,size=\(bytes)"), label: "floor")),
                ]
                guard Files.readText(work + "/prezero.err")?.contains("(miss)") != true else {
                    throw CLIError("prezero launch missed: the pool must hold \(ByteSize.format(bytes)) clean; see `prezero status`")
                }
                record(row, round: round, into: &t, prefix: "start")
            }
            let sp = t.mapValues(Spread.init)
            let m = { (k: String) in sp[k]?.median ?? 0 }
            let bestThreads = min(m("start_stock_threads_s"), m("start_stock_thread_context_s"))
            let r = Result(accel: accel.accel.rawValue, incoming: incoming, pageSize: mount.pageSize, hugepagesReserved: reserved, threads: n,
                           sizeBytes: bytes, smallBytes: smallBytes, runs: runs,
                           startStockS: m("start_stock_s"), startStockThreadsS: m("start_stock_threads_s"),
                           startStockThreadContextS: m("start_stock_thread_context_s"), startPrezeroS: m("start_prezero_s"),
                           startSmallS: m("start_small_s"), startFloorS: m("start_floor_s"),
                           speedup: m("start_stock_s") / m("start_prezero_s"), speedupVsThreads: bestThreads / m("start_prezero_s"),
                           sizeIndependence: m("start_prezero_s") / m("start_small_s"), prezeroVsFloor: m("start_prezero_s") / m("start_floor_s"),
                           spreads: sp)
            if json {
                printJSON(r)
                return
            }
            let sz = ByteSize.format(bytes), sm = ByteSize.format(smallBytes)
            func row(_ label: String, _ key: String) -> String { figureRow(label, sp[key], width: 40) }
            print([
                "accel: \(r.accel)",
                (incoming ? "migration destination (-incoming defer) until QMP answers inmigrate" : "QEMU start until QMP answers query-status")
                    + ", \(ByteSize.format(mount.pageSize)) pages, median [min–max] over \(runs) runs",
                row("stock, fresh file, \(sz)", "start_stock_s"),
                row("stock, prealloc-threads=\(n), \(sz)", "start_stock_threads_s"),
                row("stock, threads=\(n) in a node-0 thread-context", "start_stock_thread_context_s"),
                row("prezero launch, \(sz)", "start_prezero_s"),
                row("prezero launch, \(sm)", "start_small_s"),
                row("floor: memory-backend-ram, \(sz)", "start_floor_s"),
                "  speedup             stock / prezero                 \(f(r.speedup, 2))×",
                "  speedup_vs_threads  best threaded stock / prezero   \(f(r.speedupVsThreads, 2))×",
                "  size_independence   \(sz) / \(sm)                 \(f(r.sizeIndependence, 3))×  (target ≤ 1.10)",
                "  prezero_vs_floor    prezero / floor                 \(f(r.prezeroVsFloor, 3))×",
            ].joined(separator: "\n"))
        }
    }
}
