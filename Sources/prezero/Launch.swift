import ArgumentParser
import Foundation
import Glibc
import PrezeroCore
import PrezeroHost
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a VMM on pre-zeroed files: claim one per --memory region, put its path in the arguments, release after.",
        discussion: """
            Each {prezero:NAME} in the VMM's arguments becomes /proc/self/fd/N: the claimed file, open in the \
            VMM from the start and linked nowhere else, so that when the VMM and this command are gone, killed \
            or not, nothing has it open and prezerod takes it back on its own (its pages to the kernel). SIGTERM, SIGINT and SIGHUP are \
            passed to the VMM; when it exits, the files are released at once.

            Fail-open: on a miss, or with prezerod unreachable, {prezero:NAME} becomes the hugetlbfs mount \
            directory, where QEMU's mem-path creates (and unlinks) a fresh file: the VMM starts, only slower.

            Exit status: the VMM's own (128 + N when signal N ended it); 2 bad usage; 127 the VMM could not be started.

            Example:
              prezero launch --memory m0=8G -- qemu-system-x86_64 -m 8G -machine memory-backend=m0 \\
                -object memory-backend-file,id=m0,mem-path={prezero:m0},size=8G,share=on,prealloc=on ...
            """)

    @Option(name: .long, help: ArgumentHelp("A region: NAME=SIZE[@NODES], e.g. m0=8G or m0=8G@0 (repeatable).", valueName: "region"))
    var memory: [String] = []
    @Option(name: .long, help: "Page size of the pool to claim from: 2M or 1G. Default: the first pool mount.")
    var pageSize: PageSize?
    @Option(name: .long, help: "Owner of the claimed files as numeric UID:GID (for a VMM that drops privileges).")
    var owner: Owner = .root
    @Option(name: .long, help: "Write the claims as JSON to this file before the VMM starts.")
    var jsonClaims: String?
    @OptionGroup var connection: Connection
    @Argument(parsing: .postTerminator, help: "The VMM and its arguments, after --.")
    var command: [String] = []

    struct Claimed: Codable {
        var name: String
        var outcome: String
        var path: String
        var bytes: UInt64
        var node: Int?
        var lease: String?
    }

    func run() throws {
        guard !command.isEmpty else { throw ValidationError("give the VMM command after --, e.g. prezero launch --memory m0=2G -- qemu-system-x86_64 ...") }
        let regions: [LaunchRegion]
        do {
            regions = try memory.map { r throws(LaunchError) in try LaunchPlan.parseRegion(r) }
        } catch {
            throw ValidationError(error.description)
        }
        let wantPage = pageSize?.bytes
        // A signal during the claims is kept and ends the launch before the VMM starts.
        Signals.forward([SIGTERM, SIGINT, SIGHUP])

        let status = try? connection.client.status()
        guard let mount = Self.mount(status: status, pageSize: wantPage) else {
            throw usage("no hugetlbfs mount\(wantPage.map { " of \(ByteSize.format($0)) pages" } ?? "") to put guest memory on; mount one or start prezerod")
        }
        do {
            try LaunchPlan.check(regions, pageSize: mount.pageSize, command: command)
        } catch {
            throw usage(error.description)
        }
        if status == nil { say("prezerod is not reachable at \(connection.socket); the VMM allocates its memory itself") }

        var claims: [Claimed] = []
        var held: [Descriptor] = []
        let mountDir = try sys { () throws(SysError) in try Files.openDirectory(path: mount.path) }
        for r in regions {
            var c = Claimed(name: r.name, outcome: ClaimOutcome.miss.rawValue, path: mount.path, bytes: r.bytes, node: nil, lease: nil)
            if status != nil {
                let link = "prezero-launch.\(Processes.current()).\(r.name)"
                let req = ClaimRequest(bytes: r.bytes, pageSize: mount.pageSize, nodes: r.nodes, dest: "\(mount.path)/\(link)",
                                       uid: owner.uid, gid: owner.gid, mode: 0o600, lease: "launch.\(Processes.current()).\(r.name)")
                do {
                    let got = try connection.client.claim(req)
                    c.outcome = got.outcome.rawValue
                    if got.outcome != .miss {
                        // Open for the VMM, then unlink: from here on only open descriptors hold the file.
                        let fd = try sys { () throws(SysError) in try Files.openFile(in: mountDir, name: link, inheritable: true) }
                        try? Files.unlink(in: mountDir, link)
                        held.append(fd)
                        (c.path, c.node, c.lease) = ("/proc/self/fd/\(fd.raw)", got.node, got.lease)
                    }
                } catch {
                    // The claim may have been made and only its answer lost (prezerod killed at that
                    // moment): the name is this launch's own, and with it gone prezerod reclaims the file.
                    try? Files.unlink(in: mountDir, link)
                    say("\(r.name): prezerod refused the claim (\((error as? ControlError)?.message ?? "\(error)")); the VMM allocates it itself")
                }
            }
            say(c.outcome == ClaimOutcome.miss.rawValue
                ? "\(r.name): \(ByteSize.format(r.bytes)), no pre-zeroed file (miss): the VMM zeroes it at start, on \(mount.path)"
                : "\(r.name): \(ByteSize.format(r.bytes)) pre-zeroed on node \(c.node ?? -1) (\(c.outcome))")
            claims.append(c)
        }
        func releaseAll() {
            held = []
            for c in claims {
                guard let lease = c.lease else { continue }
                if (try? connection.client.release(ReleaseRequest(lease: lease))) == nil {
                    say("\(c.name): release failed; prezerod reclaims it once no process holds it")
                }
            }
        }
        if let jsonClaims {
            do {
                try Files.writeText(jsonClaims, try Wire.pretty(claims) + "\n")
            } catch {
                releaseAll()
                throw CLIError("cannot write --json-claims \(jsonClaims): \(error)", code: 2)
            }
        }
        if Signals.pending != 0 {
            releaseAll()
            throw ExitCode(128 + Signals.pending)
        }
        let args = LaunchPlan.substitute(command, paths: Dictionary(uniqueKeysWithValues: claims.map { ($0.name, $0.path) }))
        let vmm: ChildProcess
        do {
            vmm = try ChildProcess(args, stdin: nil, stdout: nil, stderr: nil)
        } catch {
            releaseAll()
            say("cannot start \(command[0]): \(error)")
            throw ExitCode(127)
        }
        Signals.forward(to: vmm.pid)
        if Signals.pending != 0 { vmm.signal(Signals.pending) }
        let code = (try? vmm.wait()) ?? 1
        releaseAll()
        if !claims.allSatisfy({ $0.lease == nil }) { say("released \(claims.compactMap { $0.lease == nil ? nil : $0.name }.joined(separator: ", ")): taken back once nothing has them open") }
        throw ExitCode(code)
    }

    /// Bad usage found once the launch has begun: one line, exit status 2.
    func usage(_ message: String) -> ExitCode {
        say(message)
        return ExitCode(2)
    }

    func say(_ s: String) { Streams.writeError("prezero: \(s)\n") }

    func sys<T>(_ body: () throws(SysError) -> T) throws -> T {
        do { return try body() } catch { throw CLIError("\(error)") }
    }

    /// The mount to claim from (prezerod's), or any hugetlbfs mount of the page size when
    /// prezerod cannot be asked.
    static func mount(status: StatusResult?, pageSize: UInt64?) -> (path: String, pageSize: UInt64)? {
        if let status {
            return status.mounts.map { ($0.path, $0.pageSize) }.first { pageSize == nil || $0.1 == pageSize }
        }
        let meminfo = HostDiscovery.meminfo()
        let fallback = ProcParsers.defaultHugepageSize(meminfo: meminfo) ?? (2 << 20)
        return HostDiscovery.hugetlbfsMounts()
            .map { ($0.path, $0.pageSizeOption ?? fallback) }.first { pageSize == nil || $0.1 == pageSize }
    }
}
