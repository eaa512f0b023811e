import ArgumentParser
import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys

struct BenchLaunch: ParsableCommand, BenchOutput {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "QEMU started directly: a fresh hugetlbfs file against one handed over by prezero launch.",
        discussion: """
            Needs prezerod running with a pool of SIZE + SMALL clean on a 2 MiB or 1 GiB mount with room \
            for one more SIZE (`make bench-launch` sets up a private one). Each start is timed from the \
            spawn until QEMU answers query-status on QMP, then QEMU is stopped; after one untimed round, \
            --runs rounds time:
              stock      memory-backend-file on a fresh file of SIZE, prealloc=on: QEMU's pages are zeroed at start
              prezero    the same command through prezero launch: a pre-zeroed file
              small      the prezero start at SMALL: the cost of a start without memory
            Ratios: speedup = stock / prezero; size_independence = prezero / small (target ≤ 1.15).
            """)

    @OptionGroup var options: StartBenchOptions
    @Option(name: .long, help: "The QEMU binary.")
    var qemu: String = "qemu-system-x86_64"
    @OptionGroup var connection: Connection

    var json: Bool { options.json }
    var runs: Int { options.runs }

    struct Result: Codable {
        var sizeBytes: UInt64
        var smallBytes: UInt64
        var runs: Int
        var startStockS: Double
        var startPrezeroS: Double
        var startSmallS: Double
        var speedup: Double
        var sizeIndependence: Double
        var spreads: [String: Spread]

        enum CodingKeys: String, CodingKey {
            case runs, speedup, spreads
            case sizeBytes = "size_bytes", smallBytes = "small_bytes", startStockS = "start_stock_s"
            case startPrezeroS = "start_prezero_s", startSmallS = "start_small_s", sizeIndependence = "size_independence"
        }
    }

    func run() throws {
        try guarded {
            let (bytes, smallBytes) = try options.sizes()
            let status = try connection.send(Request(op: .status)).status!
            guard let mount = status.mounts.first else { throw CLIError("prezerod has no pool mount") }
            guard bytes % mount.pageSize == 0, smallBytes % mount.pageSize == 0 else {
                throw CLIError("--size and --small must be whole \(ByteSize.format(mount.pageSize)) pages", code: 2)
            }
            let work = "/tmp/prezero-bench-launch-\(getpid())"
            do { try Files.makeDirectories(work, mode: 0o700) } catch { throw CLIError("cannot make \(work): \(error)") }
            defer { _ = try? ChildProcess(["rm", "-rf", work]).wait() }
            note("bench launch: \(ByteSize.format(bytes)) and \(ByteSize.format(smallBytes)) guests on \(mount.path), \(runs) runs after one untimed round")

            /// QEMU's arguments for a guest of `b` bytes whose memory is at `memPath`.
            func qemuArgs(_ b: UInt64, memPath: String, qmp: String) -> [String] {
                [qemu, "-accel", "tcg", "-nodefaults", "-nographic", "-display", "none", "-m", "\(b >> 20)M",
                 "-object", "memory-backend-file,id=m0,mem-path=\(memPath),size=\(b),share=on,prealloc=on",
                 "-machine", "pc,memory-backend=m0", "-qmp", "unix:\(qmp),server=on,wait=off"]
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
                p.signal(SIGTERM)
                _ = try? p.wait(timeout: 60)
                try? Files.removePath(qmp)
                guard up else {
                    let err = Files.readText(work + "/\(label).err") ?? ""
                    throw CLIError("\(label): QEMU did not answer on QMP: \(err.split(separator: "\n").last ?? "no message")")
                }
                return took
            }
            let fresh = mount.path + "/prezero-bench-stock.\(getpid())"
            let launch = { (b: UInt64) in
                [Binaries.prezero, "launch", "--socket", connection.socket, "--memory", "m0=\(b >> 20)M", "--"]
                    + qemuArgs(b, memPath: "{prezero:m0}", qmp: "{qmp}")
            }
            var t: [String: [Double]] = [:]
            for round in 0...runs {
                let s = try timeStart(qemuArgs(bytes, memPath: fresh, qmp: "{qmp}"), label: "stock")
                try? Files.removePath(fresh)
                let p = try timeStart(launch(bytes), label: "prezero")
                let m = try timeStart(launch(smallBytes), label: "small")
                guard Files.readText(work + "/prezero.err")?.contains("(miss)") != true else {
                    throw CLIError("prezero launch missed: the pool must hold \(ByteSize.format(bytes)) clean; see `prezero status`")
                }
                guard round > 0 else { continue }
                t["stock", default: []].append(s)
                t["prezero", default: []].append(p)
                t["small", default: []].append(m)
                note("  run \(round): stock \(f(s)) s, prezero \(f(p)) s, small \(f(m)) s")
            }
            let sp = t.mapValues(Spread.init)
            let r = Result(sizeBytes: bytes, smallBytes: smallBytes, runs: runs, startStockS: sp["stock"]!.median,
                           startPrezeroS: sp["prezero"]!.median, startSmallS: sp["small"]!.median,
                           speedup: sp["stock"]!.median / sp["prezero"]!.median,
                           sizeIndependence: sp["prezero"]!.median / sp["small"]!.median, spreads: sp)
            if json {
                printJSON(r)
                return
            }
            print("""
                QEMU start until QMP answers query-status, median [min–max] over \(runs) runs
                  stock, fresh file, \(ByteSize.format(bytes))        \(sp["stock"]!.text()) s
                  prezero launch, \(ByteSize.format(bytes))           \(sp["prezero"]!.text()) s
                  prezero launch, \(ByteSize.format(smallBytes))         \(sp["small"]!.text()) s
                  speedup            stock / prezero   \(f(r.speedup, 2))×
                  size_independence  \(ByteSize.format(bytes)) / \(ByteSize.format(smallBytes))   \(f(r.sizeIndependence, 3))×  (target ≤ 1.15)
                """)
        }
    }

}
