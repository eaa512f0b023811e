import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

/// Where the built executables are: beside the test bundle, or $PREZERO_BIN.
enum Binaries {
    static var dir: String {
        if let d = ProcessInfo.processInfo.environment["PREZERO_BIN"] { return d }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe)
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("prezerod").path) {
            url = url.deletingLastPathComponent()
        }
        return url.path
    }
    static var prezerod: String { dir + "/prezerod" }
    static var prezero: String { dir + "/prezero" }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Child processes come from PrezeroSys, wrapped to throw a test failure.
typealias Child = ChildProcess

/// Runs a command to completion; returns (status, stdout, stderr). Output goes through
/// files, not pipes, so a daemon the command leaves behind cannot hold us up; after
/// `timeout` seconds the command is killed.
@discardableResult
func run(_ args: [String], stdin: String? = nil, env: [String: String] = [:], timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
    let tmp = NSTemporaryDirectory() + "prezero-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { for f in [".in", ".out", ".err"] { unlink(tmp + f) } }
    try Data((stdin ?? "").utf8).write(to: URL(fileURLWithPath: tmp + ".in"))
    let child = try Child(args, stdin: tmp + ".in", stdout: tmp + ".out", stderr: tmp + ".err", env: env)
    let status = try child.wait(timeout: timeout)
    let out = (try? String(contentsOfFile: tmp + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: tmp + ".err", encoding: .utf8)) ?? ""
    return (status, out, err)
}

/// Polls `cond` until it holds or `timeout` passes.
func waitFor(_ what: String, timeout: Double = 30, _ cond: () throws -> Bool) throws {
    let end = monotonicSeconds() + timeout
    while monotonicSeconds() < end {
        if try cond() { return }
        sleepSeconds(0.05)
    }
    throw TestFailure("timed out after \(timeout) s waiting for \(what)")
}

/// Host-wide huge-page counters (sysfs), read directly rather than through the daemon.
func freePages(_ pageSize: UInt64) -> UInt64 { HugePageCounters.node(0, pageSize: pageSize)?.free ?? 0 }
func hostFreePages(_ pageSize: UInt64) -> UInt64 { HugePageCounters.host(pageSize: pageSize)?.free ?? 0 }

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30
let page2M: UInt64 = 2 * MiB

/// A private hugetlbfs mount under /tmp and a prezerod running on it, with its own
/// socket and state directory, so a test never touches a host's real configuration.
/// Everything is undone by `close()`: the daemon stopped by PID, the pool drained,
/// the mount unmounted, the directory removed.
final class TestPool {
    let base: String
    let mount: String
    let pageSize: UInt64
    let socket: String
    let configPath: String
    var process: Child?
    var logPath: String { base + "/prezerod.log" }

    /// - Parameter config: YAML lines added to the generated config (mounts, socket and state_dir are set here).
    ///   - mountOptions: extra hugetlbfs options, e.g. `size=32M` to cap what the pool can ever hold.
    ///   - listMount: false leaves `mounts:` out of the config, for prezerod to find its mounts itself.
    init(pageSize: UInt64 = page2M, config: String = "", mountConfig: String = "", mountOptions: String = "",
         listMount: Bool = true) throws {
        TestPool.reapStale()
        base = "/tmp/prezero-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mount = base + "/hugepages"
        self.pageSize = pageSize
        socket = base + "/prezerod.sock"
        configPath = base + "/prezerod.yaml"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let opt = (pageSize == GiB ? "pagesize=1G" : "pagesize=2M") + (mountOptions.isEmpty ? "" : "," + mountOptions)
        let m = try run(["/bin/mount", "-t", "hugetlbfs", "-o", opt, "none", mount])
        guard m.status == 0 else { throw TestFailure("mount hugetlbfs: \(m.err)") }
        // Three fill workers unless a test says otherwise: every host test then runs with
        // fills at once (this machine's default, half its CPUs, may be 1).
        let config = (config.contains("fill_workers:") ? config : config + "\nfill_workers: 3")
            .replacingOccurrences(of: "{mount}", with: mount).replacingOccurrences(of: "{base}", with: base)
        let mounts = """
            mounts:
              - path: \(mount)
            \(mountConfig.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """
        let yaml = """
            socket: \(socket)
            state_dir: \(base)/state
            \(config)
            \(listMount ? mounts : "")

            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// - Parameter wrapper: a command prezerod runs under, e.g. `setpriv` with a unit's capabilities.
    func start(wrapper: [String] = []) throws {
        let p = try Child(wrapper + [Binaries.prezerod, "--config", configPath, "--log-level", "debug"], stdout: logPath, stderr: logPath)
        process = p
        try "\(p.pid)".write(toFile: base + "/prezerod.pid", atomically: true, encoding: .utf8)
        try waitFor("prezerod to listen on \(socket)", timeout: 20) {
            guard p.isRunning else { throw TestFailure("prezerod exited: \(self.log())") }
            return (try? client.status()) != nil
        }
    }

    /// Graceful stop (SIGTERM) by PID, waiting for the exit.
    func stop() {
        guard let p = process else { return }
        p.signal(SIGTERM)
        _ = try? p.wait(timeout: 30)
        process = nil
    }

    /// kill -9, as a crash would.
    func crash() {
        guard let p = process else { return }
        p.signal(SIGKILL)
        _ = try? p.wait(timeout: 10)
        process = nil
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    var client: ControlClient { ControlClient(socket: socket, timeout: 20) }

    func status() throws -> MountStatus {
        try client.status().mounts[0]
    }

    func node0() throws -> NodeStatus { try status().nodes[0] }

    func claim(_ bytes: UInt64, as name: String, lease: String? = nil, nodes: [Int] = []) throws -> ClaimResult {
        try client.claim(ClaimRequest(bytes: bytes, pageSize: pageSize, nodes: nodes, dest: mount + "/" + name, lease: lease))
    }

    func release(lease: String) throws -> ReleaseResult {
        try client.release(ReleaseRequest(lease: lease))
    }


    /// Waits until the pool holds `bytes` clean on node 0 and nothing is in flight.
    func waitClean(_ bytes: UInt64, timeout: Double = 60) throws {
        try waitFor("\(bytes) clean bytes", timeout: timeout) {
            let n = try node0()
            return n.cleanBytes == bytes && n.fillingBytes == 0
        }
    }

    /// After a released file was taken back: `bytes` clean again in new files, all zero, and
    /// none of them the old inode (an inode serves one tenant only).
    func expectRecycled(inode: UInt64, bytes: UInt64, timeout: Double = 60) throws {
        do {
            try waitClean(bytes, timeout: timeout)
        } catch {
            throw TestFailure("\(error); prezerod's log ends: \(log().suffix(3000))")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: "\(mount)/.prezero/clean") {
            let path = "\(mount)/.prezero/clean/\(name)"
            #expect(Files.status(followingPath: path)?.inode != inode, "the released inode is never handed out again")
            #expect(try FileBytes.allZero(path), "a new file holds only the kernel's zeroes")
        }
        #expect(try node0().recycledFiles >= 1)
    }

    /// Names in every pool state directory, to compare before and after a refused request.
    func snapshot() -> [String] {
        FileState.allCases.flatMap { s in
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(mount)/.prezero/\(s.rawValue)")) ?? []).sorted().map { "\(s.rawValue)/\($0)" }
        } + ((try? FileManager.default.contentsOfDirectory(atPath: mount)) ?? []).sorted()
    }

    /// The same, with each pool file's sequence number left out: after a hand-over and its
    /// take-back, a new file of the same size and node stands where the old one was.
    func shape() -> [String] {
        snapshot().map { entry in
            guard let slash = entry.lastIndex(of: "/"), let f = PoolFileName(String(entry[entry.index(after: slash)...])) else { return entry }
            return "\(entry[...slash])n\(f.node)-\(f.bytes)"
        }
    }

    /// A copy of the CLI that an unprivileged user can execute.
    func copyCLI() throws -> String {
        let to = base + "/prezero"
        if !FileManager.default.fileExists(atPath: to) {
            try FileManager.default.copyItem(atPath: Binaries.prezero, toPath: to)
        }
        chmod(base, 0o755)
        chmod(to, 0o755)
        return to
    }

    func close() {
        if process != nil {
            _ = try? client.drain()
            stop()
        }
        // Whatever is left in the mount goes back to the kernel with the unmount.
        _ = try? run(["/bin/umount", mount])
        try? FileManager.default.removeItem(atPath: base)
    }

    deinit { close() }

    /// A test run that crashed leaves its prezerod and mount behind: stop that daemon
    /// by its recorded PID and unmount, for every pool whose test process is gone.
    static func reapStale() {
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for d in dirs where d.hasPrefix("prezero-test-") {
            let parts = d.split(separator: "-")
            guard parts.count == 4, let owner = Int32(parts[2]), !LibvirtHost.alive(owner) else { continue }
            let base = "/tmp/" + d
            if let text = try? String(contentsOfFile: base + "/prezerod.pid", encoding: .utf8), let pid = Int32(text) {
                kill(pid, SIGKILL)
                try? waitFor("stale prezerod \(pid) to exit", timeout: 5) { !LibvirtHost.alive(pid) }
            }
            _ = try? run(["/bin/umount", base + "/hugepages"])
            try? FileManager.default.removeItem(atPath: base)
        }
        LibvirtHost.reapStale()
    }
}

/// Maps a whole file shared and checks or writes every byte.
enum FileBytes {
    static func map(_ path: String) throws -> (Mapping, Descriptor) {
        let dirPath = (path as NSString).deletingLastPathComponent
        let dir = try Files.openDirectory(path: dirPath)
        let fd = try Files.openFile(in: dir, name: (path as NSString).lastPathComponent)
        let size = try Files.status(fd).size
        return (try Mapping(fd, length: Int(size)), fd)
    }

    static func allZero(_ path: String) throws -> Bool {
        let (m, _) = try map(path)
        return Zeroing.isZero(m.base, m.length)
    }

    static func fill(_ path: String, byte: UInt8) throws {
        let (m, _) = try map(path)
        Zeroing.fill(m.base, m.length, byte: byte)
    }
}
