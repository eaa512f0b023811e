import ArgumentParser
import Foundation
import PrezeroProtocol
import PrezeroSys
import PrezeroClient
import PrezeroCore

@main
struct Prezero: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prezero",
        abstract: "Control prezerod: pools of pre-zeroed hugetlbfs pages for fast VM launch.",
        discussion: """
            Exit status: 0 success, 1 the request failed or was refused, 2 bad usage,
            3 prezerod could not be reached, 4 doctor found a problem.
            """,
        subcommands: [Status.self, Claim.self, Release.self, Fill.self, Drain.self, Doctor.self, Metrics.self, Launch.self, Install.self, Libvirt.self, Accel.self, Bench.self, LabCommandGroup.self])
}

extension Prezero {
    /// ArgumentParser exits 64 on bad usage; prezero's documented status for it is 2.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                Streams.writeError(fullMessage(for: error) + "\n")
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// The prezero binaries beside this one.
enum Binaries {
    static var dir: String { Bundle.main.executableURL?.deletingLastPathComponent().path ?? "/usr/local/bin" }
    static var prezero: String { dir + "/prezero" }
}

/// `--socket` and `--json`, shared by every command that talks to prezerod.
struct Connection: ParsableArguments {
    @Option(name: .long, help: "prezerod's control socket.")
    var socket: String = ControlProtocol.defaultSocket

    @Option(name: .long, help: "Seconds to wait for prezerod's answer.")
    var timeout: Double = 30

    var client: ControlClient { ControlClient(socket: socket, timeout: timeout) }

    /// Asks prezerod; a failure is printed as one line and exits with a meaningful status.
    func call<T>(_ body: (ControlClient) throws(ControlError) -> T) throws -> T {
        do {
            return try body(client)
        } catch {
            throw CLIError(error)
        }
    }

    func status() throws -> StatusResult { try call { c throws(ControlError) in try c.status() } }
    func claim(_ r: ClaimRequest) throws -> ClaimResult { try call { c throws(ControlError) in try c.claim(r) } }
    func release(_ r: ReleaseRequest) throws -> ReleaseResult { try call { c throws(ControlError) in try c.release(r) } }
    func fill(_ s: PoolScope) throws -> StatusResult { try call { c throws(ControlError) in try c.fill(s) } }
    func drain(_ s: PoolScope) throws -> StatusResult { try call { c throws(ControlError) in try c.drain(s) } }
}

/// One line on stderr and an exit status that says what went wrong.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var code: Int32

    init(_ e: ControlError) {
        description = e.message
        code = e.code.exitStatus
    }

    init(_ message: String, code: Int32 = 1) {
        description = message
        self.code = code
    }
}

extension ParsableCommand {
    /// Runs `body`, turning a CLIError into its message on stderr and its exit status.
    func guarded(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as CLIError {
            Streams.writeError("prezero: \(e.description)\n")
            throw ExitCode(e.code)
        }
    }
}

func printJSON<T: Encodable>(_ value: T) {
    if let s = try? Wire.pretty(value) { print(s) }
}

/// Rows as columns two spaces apart, one line each. The first column is left-aligned; the
/// others are right-aligned with `numbers`, else left-aligned with the last one unpadded.
func columns(_ rows: [[String]], numbers: Bool) -> String {
    guard let head = rows.first else { return "" }
    let widths = head.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    return rows.map { r in
        r.enumerated().map { i, c in
            if numbers && i > 0 { return String(repeating: " ", count: widths[i] - c.count) + c }
            return !numbers && i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ") + "\n"
    }.joined()
}

