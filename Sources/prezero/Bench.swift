import ArgumentParser
import Foundation
import Glibc
import Logging
import PrezeroBench
import PrezeroCore
import PrezeroHost
import PrezeroProtocol
import PrezeroSys

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each against its baseline measured in the same run.",
        subcommands: [BenchBinary.self, BenchStorm.self, BenchLibvirt.self, BenchLaunch.self])
}

/// `prezero bench pool` and `prezero bench storm`: the static prezero-bench, found beside
/// this binary (the build tree) or in ../libexec/prezero (an install), with the arguments
/// as given. It runs on a machine with no Swift, libvirt or QEMU, so it is its own binary.
struct BenchBinary: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Fill, recycle, hand-over and fill budget of a private pool, each beside the machine's own rate (runs prezero-bench pool).",
        discussion: BenchCommand.usage)

    @Argument(parsing: .allUnrecognized, help: "prezero-bench's options (see below).")
    var args: [String] = []

    func run() throws {
        try Self.exec(["pool"] + args)
    }

    /// Runs prezero-bench with `args`, passing its output through, and exits with its status.
    static func exec(_ args: [String]) throws {
        let dir = Processes.executableDirectory()
        let candidates = [dir + "/prezero-bench", dir + "/../libexec/prezero/prezero-bench"]
        guard let bin = candidates.first(where: { Files.status(followingPath: $0).map { $0.mode & 0o111 != 0 } ?? false }) else {
            throw CLIError("prezero-bench is not installed beside prezero (looked for \(candidates.joined(separator: " and "))); build it with make release, or install with make install", code: 1)
        }
        let child = try ChildProcess([bin] + args, stdin: nil, stdout: nil, stderr: nil)
        let code = try child.wait()
        if code != 0 { throw ExitCode(code) }
    }
}

struct BenchStorm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "A boot storm: N claims at once, as N hooks would, then N releases, beside N VMs preallocating at once (runs prezero-bench storm).",
        discussion: BenchCommand.usage)

    @Argument(parsing: .allUnrecognized, help: "prezero-bench's options (see below).")
    var args: [String] = []

    func run() throws {
        try BenchBinary.exec(["storm"] + args)
    }
}

/// Progress on stderr (none with --json) and figures, for every benchmark.
protocol BenchOutput {
    var json: Bool { get }
}

extension BenchOutput {
    func note(_ s: String) {
        if !json { Streams.writeError(s + "\n") }
    }

    func f(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

    /// Keeps one round's timings (key, seconds) after the untimed round 0 and shows them;
    /// keys are `<prefix>_<name>_s`, shown as `<name>`.
    func record(_ row: [(key: String, seconds: Double)], round: Int, into t: inout [String: [Double]], prefix: String, label: String = "run") {
        guard round > 0 else { return }
        for (k, v) in row { t[k, default: []].append(v) }
        note("  \(label) \(round): " + row.map { "\($0.key.dropFirst(prefix.count + 1).dropLast(2)) \(f($0.seconds))" }.joined(separator: ", ") + " s")
    }

    /// One figure of the printed table: its label, padded to `width` (never cut), and its spread.
    func figureRow(_ label: String, _ spread: Spread?, width: Int) -> String {
        "  \(label)\(String(repeating: " ", count: max(1, width + 1 - label.count)))\(spread?.text() ?? "-") s"
    }
}

/// --size, --small, --runs and --json, shared by the start benchmarks.
struct StartBenchOptions: ParsableArguments {
    @Option(name: .long, help: "Guest size (default 8G).")
    var size = Size(bytes: 8 << 30)
    static let defaultSmall = Size(bytes: 256 << 20)
    @Option(name: .long, help: "Guest size for the start without memory (default 256M; one page on a mount of larger pages).")
    var small = defaultSmall
    @Option(name: .long, help: "Timed rounds (at least 5).")
    var runs: Int = 5
    @Flag(name: .long, help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard runs >= 5 else { throw ValidationError("--runs must be at least 5 for a median and a range") }
    }

    /// The two sizes, in bytes, as whole pages of `pageSize`; the default SMALL becomes one
    /// page on a mount of larger pages (the smallest guest of those pages).
    func sizes(pageSize: UInt64) throws -> (UInt64, UInt64) {
        let bytes = size.bytes
        var smallBytes = small.bytes
        if smallBytes % pageSize != 0, small == Self.defaultSmall { smallBytes = pageSize }
        guard bytes % pageSize == 0, smallBytes % pageSize == 0 else {
            throw CLIError("--size and --small must be whole \(ByteSize.format(pageSize)) pages", code: 2)
        }
        return (bytes, smallBytes)
    }
}
