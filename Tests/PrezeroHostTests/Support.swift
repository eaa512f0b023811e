import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroLab
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

/// Runs a command to completion; returns (status, stdout, stderr) (PrezeroLab's LabCommand).
@discardableResult
func run(_ args: [String], stdin: String? = nil, env: [String: String] = [:], timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
    try LabCommand.run(args, stdin: stdin, env: env, timeout: timeout)
}

/// Polls `cond` until it holds or `timeout` passes.
func waitFor(_ what: String, timeout: Double = 30, _ cond: () throws -> Bool) throws {
    try LabCommand.waitFor(what, timeout: timeout, cond)
}

/// Host-wide huge-page counters (sysfs), read directly rather than through the daemon.
func freePages(_ pageSize: UInt64) -> UInt64 { HugePageCounters.node(0, pageSize: pageSize)?.free ?? 0 }
func hostFreePages(_ pageSize: UInt64) -> UInt64 { HugePageCounters.host(pageSize: pageSize)?.free ?? 0 }

let MiB: UInt64 = 1 << 20
let GiB: UInt64 = 1 << 30
let page2M: UInt64 = 2 * MiB

/// The tests' pool is the lab's (PrezeroLab): a private hugetlbfs mount under /tmp and a
/// prezerod on it, undone by `close()`. Three fill workers unless a test says otherwise, so
/// every host test runs with fills at once (this machine's default, half its CPUs, may be 1).
typealias TestPool = LabPool

extension LabPool {
    convenience init(pageSize: UInt64 = page2M, config: String = "", mountConfig: String = "", mountOptions: String = "",
                     listMount: Bool = true) throws {
        try self.init(bin: Binaries.dir, pageSize: pageSize, config: config.contains("fill_workers:") ? config : config + "\nfill_workers: 3",
                      mountConfig: mountConfig, mountOptions: mountOptions, listMount: listMount)
    }

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
