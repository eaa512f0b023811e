import Logging
import PrezeroCore
import PrezeroHost
import PrezeroPool
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// A temporary hugetlbfs mount with an in-process pool on it; everything is undone by `close()`.
/// Threads of a bench share it for its paths and its file helpers; only the bench's own thread
/// starts and stops its daemon.
final class Lab: @unchecked Sendable {
    let base: String
    let mount: String
    let pageSize: UInt64
    /// The node the benches fill and bind to: the first with memory.
    let nodeID = Numa.memoryNodes().first ?? 0
    var current: PoolDaemon?
    var server: ControlServer?
    var socket: String { base + "/prezerod.sock" }
    /// Pages of this size that others held when the lab began: a drain waits for the
    /// host to be back there, not at zero, so a bench runs beside other huge-page users.
    let othersInUse: UInt64

    init(pageSize: UInt64) throws {
        guard Processes.userID() == 0 else { throw BenchError("prezero-bench needs root: it mounts hugetlbfs and binds memory; run it with sudo") }
        self.pageSize = pageSize
        othersInUse = Lab.pagesInUse(pageSize)
        base = "/tmp/prezero-bench-\(Processes.current())-\(pageSize >> 20)M"
        mount = base + "/hugepages"
        try Files.makeDirectories(mount, mode: 0o755)
        do {
            try Mounts.mountHugetlbfs(at: mount, pageSize: pageSize)
        } catch {
            Files.removeTree(base)
            throw BenchError("cannot mount hugetlbfs of \(ByteSize.format(pageSize)) pages at \(mount): \(error); does the kernel have them (ls /sys/kernel/mm/hugepages)?")
        }
    }

    /// Free huge pages of this lab's size on the host, in bytes.
    var freeBytes: UInt64 { (HugePageCounters.host(pageSize: pageSize)?.free ?? 0) * pageSize }

    /// A pool on the mount; `serve` adds its control socket.
    func daemon(fileSize: UInt64, workers: Int?, bandwidth: UInt64 = 0, refillDelayMs: Int = 60_000, target: UInt64 = 0,
                serve: Bool = false) throws -> PoolDaemon {
        var c = Config()
        c.fileSize = .bytes(fileSize)
        c.fillChunk = .bytes(max(pageSize, min(fileSize, 256 << 20)))
        c.socket = socket
        c.stateDir = base + "/state"
        c.minFree = .bytes(0)
        c.target = .bytes(target)
        c.learnedShapes = 0
        c.fillBandwidth = .bytes(bandwidth)
        c.fillWorkers = workers
        c.refillDelayMs = refillDelayMs
        c.mounts = [MountConfig(path: mount)]
        var logger = Logger(label: "prezero-bench")
        logger.logLevel = .warning
        let d = try PoolDaemon(config: c, mounts: HostDiscovery.poolMounts(c).mounts, logger: logger)
        try d.start()
        current = d
        if serve {
            let s = try ControlServer(daemon: d, logger: logger)
            try s.start()
            server = s
        }
        return d
    }

    func stop() {
        server?.stop()
        server = nil
        current?.stop()
        current = nil
    }

    /// The first touch of memory on these VMs is slow; touch the pages once before timing.
    func warm(_ bytes: UInt64) throws {
        _ = try timeFreshFile(bytes, populate: true)
    }

    /// Seconds to fallocate (populate == false) or to mmap + MADV_POPULATE_WRITE (true) a new file.
    func timeFreshFile(_ bytes: UInt64, populate: Bool, name: String = "fresh") throws -> Double {
        let dir = try Files.openDirectory(path: mount)
        let fd = try Files.openFile(in: dir, name: name, create: true)
        defer { try? Files.unlink(in: dir, name) }
        let t = monotonicSeconds()
        if populate {
            try Files.truncate(fd, to: bytes)
            let m = try Mapping(fd, length: Int(bytes))
            try m.populateWrite()
            m.unmap()
        } else {
            try Files.allocate(fd, offset: 0, length: bytes)
        }
        return monotonicSeconds() - t
    }

    /// Seconds to populate a new file of `bytes` with `threads` threads, each over its own
    /// slice of one mapping, as QEMU's prealloc-threads does.
    func timeFreshFile(_ bytes: UInt64, threads: Int) throws -> Double {
        let dir = try Files.openDirectory(path: mount)
        let fd = try Files.openFile(in: dir, name: "fresh-threads", create: true)
        defer { try? Files.unlink(in: dir, "fresh-threads") }
        let t = monotonicSeconds()
        try Files.truncate(fd, to: bytes)
        let m = try Mapping(fd, length: Int(bytes))
        defer { m.unmap() }
        let pages = Int(bytes / pageSize), ps = Int(pageSize)
        _ = try together(threads) { i in
            let first = pages * i / threads, last = pages * (i + 1) / threads
            if last > first { try m.populateWrite(offset: first * ps, length: (last - first) * ps) }
        }
        return monotonicSeconds() - t
    }

    func send(_ d: PoolDaemon, _ r: Request) throws -> Response {
        let res = d.handle(r)
        if case .error(let e) = res { throw BenchError("bench: \(e.message)") }
        return res
    }

    func node(_ d: PoolDaemon) -> NodeStatus { d.status().mounts[0].nodes.first { $0.node == nodeID } ?? d.status().mounts[0].nodes[0] }

    /// Sets the pool's target to `bytes` and returns the seconds until it is all clean.
    func fill(_ d: PoolDaemon, _ bytes: UInt64) throws -> Double {
        let t = monotonicSeconds()
        _ = try send(d, .fill(PoolScope(node: nodeID, target: .bytes(bytes))))
        try wait("the fill") { let n = node(d); return n.cleanBytes == bytes && n.fillingBytes == 0 }
        return monotonicSeconds() - t
    }

    func claim(_ d: PoolDaemon, _ bytes: UInt64, name: String = "vm") throws -> ClaimResult {
        guard case .claim(let c) = try send(d, .claim(ClaimRequest(bytes: bytes, pageSize: pageSize, dest: mount + "/" + name))) else {
            throw BenchError("bench: the claim got no claim result")
        }
        guard c.outcome == .hit else { throw BenchError("bench: expected a hit, got \(c.outcome.rawValue)") }
        return c
    }

    func mapAndPopulate(_ path: String) throws -> (Mapping, Double) {
        let dir = try Files.openDirectory(path: mount)
        let fd = try Files.openFile(in: dir, name: String(path.split(separator: "/").last ?? ""))
        let size = try Files.status(fd).size
        let t = monotonicSeconds()
        let m = try Mapping(fd, length: Int(size))
        try m.populateWrite()
        return (m, monotonicSeconds() - t)
    }

    /// Empties the pool and waits until the kernel has every page back, so that the
    /// next run's baseline starts from the same free pages.
    func drain(_ d: PoolDaemon) throws {
        _ = try send(d, .drain(PoolScope()))
        try wait("the drain") { let n = node(d); return n.cleanBytes + n.fillingBytes + n.leasedBytes == 0 }
        try waitPagesBack()
    }

    func waitPagesBack() throws {
        try wait("the kernel to have every page back") { Lab.pagesInUse(pageSize) <= othersInUse }
    }

    /// Huge pages of `pageSize` in use on the host (0 where the counters cannot be read).
    static func pagesInUse(_ pageSize: UInt64) -> UInt64 {
        HugePageCounters.host(pageSize: pageSize).map { $0.total - min($0.total, $0.free) } ?? 0
    }

    func wait(_ what: String, timeout: Double = 120, _ cond: () -> Bool) throws {
        let end = monotonicSeconds() + timeout
        while !cond() {
            guard monotonicSeconds() < end else { throw BenchError("bench: timed out waiting for \(what)") }
            sleepSeconds(0.002)
        }
    }

    func close() {
        stop()
        try? Mounts.unmount(mount)
        Files.removeTree(base)
    }
}

/// Runs `body(i)` on `n` threads that start together, and waits for all; each one's
/// result, in order.
func together<T: Sendable>(_ n: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
    let results = Mutex<[Int: Result<T, BenchError>]>([:])
    let ready = Synchronization.Atomic<Int>(0)
    for i in 0..<n {
        try startThread {
            ready.add(1, ordering: .relaxed)
            while ready.load(ordering: .relaxed) < n { sleepSeconds(0.0001) }
            let r: Result<T, BenchError>
            do { r = .success(try body(i)) } catch { r = .failure(error as? BenchError ?? BenchError("\(error)")) }
            results.withLock { $0[i] = r }
        }
    }
    while results.withLock({ $0.count }) < n { sleepSeconds(0.0005) }
    return try results.withLock { r in try (0..<n).map { try r[$0]!.get() } }
}
