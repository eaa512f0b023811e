import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization
import Testing

/// What the soak counts, from every tenant thread.
private final class SoakLedger: Sendable {
    struct Counts {
        /// Bytes the tenants found zero before writing, and the checker's bytes read back.
        var tenantBytes: UInt64 = 0, checkerBytes: UInt64 = 0, nonZero: UInt64 = 0
        var handOvers: [String: Int] = [:], misses: [String: Int] = [:]
        var kills: [String: Int] = [:], prezerodKills = 0, vmmKills = 0, launcherKills = 0, checks = 0
        /// The files tenants hold right now, by inode: one handed to two at once is a leak.
        var held: Set<UInt64> = []
        /// Requests in flight right now, by tenant kind: what a kill cuts short.
        var claiming: [String: Int] = [:], releasing: [String: Int] = [:]
        var failures: [String] = []
    }
    let counts = Mutex(Counts())

    func add(_ body: (inout Counts) -> Void) { counts.withLock { body(&$0) } }
    func fail(_ s: String) { add { $0.failures.append(s) } }

    /// Runs `body` counted as a claim (or a release) of a tenant of `kind` in flight.
    func inFlight<T>(_ kind: Tenant.Kind, release: Bool = false, _ body: () throws -> T) rethrows -> T {
        add { if release { $0.releasing[kind.rawValue, default: 0] += 1 } else { $0.claiming[kind.rawValue, default: 0] += 1 } }
        defer { add { if release { $0.releasing[kind.rawValue]! -= 1 } else { $0.claiming[kind.rawValue]! -= 1 } } }
        return try body()
    }
}

/// Byte checks the soak makes without prezero's code: the tenants' view through a shared
/// mapping, and an independent reader that never maps a pool file.
enum SoakBytes {
    /// Never written after it is made.
    nonisolated(unsafe) static let zeros = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64).initializeMemory(as: UInt8.self, repeating: 0, count: 1 << 20)

    /// Non-zero bytes in a range: memcmp against zeros, counted byte by byte only where it differs.
    static func nonZero(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        var bad: UInt64 = 0
        var off = 0
        while off < n {
            let len = min(1 << 20, n - off)
            if memcmp(p + off, zeros, len) != 0 {
                let b = (p + off).assumingMemoryBound(to: UInt8.self)
                for i in 0..<len where b[i] != 0 { bad += 1 }
            }
            off += len
        }
        return bad
    }

    /// Reads a whole file with read(2): bytes read and non-zero bytes; nil if it is gone.
    static func readBack(_ path: String) -> (bytes: UInt64, nonZero: UInt64)? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buf.deallocate() }
        var total: UInt64 = 0, bad: UInt64 = 0
        while true {
            let n = read(fd, buf, 1 << 20)
            guard n > 0 else { break }
            bad += nonZero(buf, n)
            total += UInt64(n)
        }
        return (total, bad)
    }

    /// The tenant's 64 bytes: its name, padded with dots.
    static func pattern(_ tag: String) -> [UInt8] {
        Array((Array(("PREZERO-SOAK " + tag + " ").utf8.prefix(63)) + [UInt8](repeating: 0x2e, count: 64)).prefix(64))
    }

    /// Writes the tenant's pattern over the whole mapping.
    static func writePattern(_ m: Mapping, _ tag: String) {
        pattern(tag).withUnsafeBytes { _ = memcpy(m.base, $0.baseAddress!, min(64, m.length)) }
        var done = min(64, m.length)
        while done < m.length {
            let n = min(done, m.length - done)
            memcpy(m.base + done, m.base, n)
            done += n
        }
    }

    /// Does the mapping still hold the tenant's pattern, every byte of it? (The first 64
    /// bytes are the pattern, and the rest repeats them.)
    static func patternIntact(_ m: Mapping, _ tag: String) -> Bool {
        let n = min(64, m.length)
        return pattern(tag).withUnsafeBytes { memcmp(m.base, $0.baseAddress!, n) == 0 } && (m.length <= 64 || memcmp(m.base + 64, m.base, m.length - 64) == 0)
    }

    /// Maps a file by path (a /proc/PID/fd/N link too) shared and writable.
    static func map(_ path: String) throws -> Mapping {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("open \(path): \(String(cString: strerror(errno)))") }
        let d = Descriptor(fd, label: path)
        return try Mapping(d, length: Int(try Files.status(d).size))
    }
}

/// One tenant of the soak: a claimer that checks its file is zero, writes its pattern and lets go.
private struct Tenant {
    enum Kind: String, CaseIterable { case direct, hook, launch }
    let kind: Kind
    let tag: String
    let bytes: UInt64
    let nodes: [Int]
    /// The cycle whose tenants end this one (hook tenants may live across kills).
    var endCycle: Int
    var uuid = UUID().uuidString.lowercased()
    var id = 0
    var mapping: Mapping?
    var inode: UInt64 = 0
    /// The lease prezerod keeps for it: the hook's key for a domain, the tenant's own otherwise.
    var leaseKey: String { kind == .hook ? uuid + ".pc.ram" : tag }
}

/// The soak's world, shared by every tenant thread: the pool's paths and the ledger.
private final class Soak: Sendable {
    let mount: String, socket: String, base: String, logPath: String
    let backing: String, hookConf: String, template: String
    /// Huge pages held by others before the soak began.
    let others: UInt64
    let ledger = SoakLedger()
    static let states = ["filling", "clean", "leased", "quarantine"]

    init(pool: TestPool) throws {
        (mount, socket, base, logPath) = (pool.mount, pool.socket, pool.base, pool.logPath)
        backing = pool.mount + "/libvirt-ram"
        hookConf = pool.base + "/hook.conf"
        try FileManager.default.createDirectory(atPath: backing + "/libvirt/qemu", withIntermediateDirectories: true)
        try "memory_backing_dir = \"\(backing)\"\n".write(toFile: pool.base + "/qemu.conf", atomically: true, encoding: .utf8)
        try "socket = \(pool.socket)\ntimeout_ms = 5000\n".write(toFile: hookConf, atomically: true, encoding: .utf8)
        template = try String(contentsOfFile: fixturesDir + "/libvirt-9.0-hook-stdin/h1.start-begin.xml", encoding: .utf8)
        let c = HugePageCounters.host(pageSize: page2M)
        others = (c?.total ?? 0) - (c?.free ?? 0)
    }

    func entries(_ state: String) -> [String] { Files.list(path: "\(mount)/.prezero/\(state)") }

    // MARK: tenants

    func domainXML(_ t: Tenant, live: Bool) -> String {
        var x = template.replacingOccurrences(of: "<name>h1</name>", with: "<name>\(t.tag)</name>")
            .replacingOccurrences(of: "fcfe6dd4-f659-4184-b3ed-18a7f967023e", with: t.uuid)
            .replacingOccurrences(of: "2097152", with: "\(t.bytes / 1024)")
            .replacingOccurrences(of: " id='7'", with: live ? " id='\(t.id)'" : "")
        if let n = t.nodes.first {
            x = x.replacingOccurrences(of: "  <os>", with: "  <numatune><memory mode='strict' nodeset='\(n)'/></numatune>\n  <os>")
        }
        return x
    }
    func domainDir(_ t: Tenant) -> String { "\(backing)/libvirt/qemu/\(t.id)-\(t.tag.prefix(20))" }

    /// prezero-hook as libvirtd runs it: the call's arguments, the domain XML on stdin. Returns
    /// what it said on stderr (only when it fell back: prezerod unreachable or refusing).
    @discardableResult
    func hook(_ t: Tenant, _ op: String, _ sub: String) -> String {
        let xml = domainXML(t, live: op == "prepare" || op == "start")
        let r = try? runWithEnv(["PREZERO_HOOK_CONF": hookConf], [Binaries.dir + "/prezero-hook", t.tag, op, sub, "-"], stdin: xml)
        if r?.status != 0 { ledger.fail("\(t.tag): hook \(op) \(sub) exited \(r?.status ?? -1): \(r?.err ?? "")") }
        return r?.err ?? ""
    }

    /// The tenant's view of a handed-over file: all zero, of the size it asked for, held by
    /// no other tenant; then its pattern. It keeps the mapping in `t.mapping`.
    func use(_ t: inout Tenant, path: String) {
        guard let m = try? SoakBytes.map(path), let st = Files.status(followingPath: path) else {
            return ledger.fail("\(t.tag): cannot map its handed-over file \(path)")
        }
        t.inode = st.inode
        let inode = st.inode
        ledger.add { if !$0.held.insert(inode).inserted { $0.failures.append("\(t.tag): handed inode \(inode), which another tenant holds") } }
        if m.length != Int(t.bytes) { ledger.fail("\(t.tag): handed a file of \(m.length) bytes for \(t.bytes)") }
        let bad = SoakBytes.nonZero(m.base, m.length)
        if bad > 0 { ledger.fail("\(t.tag) (\(t.kind)): \(bad) non-zero bytes in the file it was handed") }
        SoakBytes.writePattern(m, t.tag)
        t.mapping = m
        ledger.add { $0.tenantBytes += UInt64(m.length); $0.nonZero += bad; $0.handOvers[t.kind.rawValue, default: 0] += 1 }
    }
    /// The tenant lets go of its file: its pattern must still be all there (nobody scrubbed
    /// or handed out a file it held), then it unmaps.
    func letGo(_ t: Tenant) {
        guard let m = t.mapping else { return }
        if !SoakBytes.patternIntact(m, t.tag) { ledger.fail("\(t.tag) (\(t.kind)): its own pattern changed while it held the file") }
        let inode = t.inode
        ledger.add { _ = $0.held.remove(inode) }
        m.unmap()
    }

    /// No file handed over: the pool had none to fit (a miss), or prezerod was down or cut off (fail-open).
    func missed(_ t: Tenant, failOpen: Bool) {
        ledger.add { $0.misses[t.kind.rawValue + (failOpen ? " fail-open" : " miss"), default: 0] += 1 }
    }

    /// A client of the socket: claim at a name of its own, use, release. One that lives on
    /// (`endCycle` later) removes its name and holds the file by its mapping alone, across
    /// kills, until `directEnd`.
    func direct(_ t: inout Tenant, cycle: Int) {
        let dest = "\(mount)/\(t.tag)"
        let client = ControlClient(socket: socket, timeout: 5)
        let claim: ClaimResult?
        do {
            claim = try ledger.inFlight(t.kind) {
                try client.claim(ClaimRequest(bytes: t.bytes, pageSize: page2M, nodes: t.nodes, dest: dest, lease: t.tag))
            }
        } catch {
            refusedIfAnswered(t, "claim", error)
            claim = nil
        }
        guard let claim, claim.outcome != .miss else {
            // The claim may have been made before the answer was lost: the name is ours, and
            // without it the lease is reclaimed once nothing holds the file.
            unlink(dest)
            missed(t, failOpen: claim == nil)
            return
        }
        use(&t, path: dest)
        if t.endCycle > cycle && t.mapping != nil {
            unlink(dest)
            return
        }
        directEnd(t)
    }
    func directEnd(_ t: Tenant) {
        let client = ControlClient(socket: socket, timeout: 5)
        // One that lived on removed its name: its lease ended then, and only its mapping kept
        // the file from being taken back. Once it unmaps, the take-back may come before its
        // release does, which then finds no lease.
        let livedOn = Files.status(followingPath: "\(mount)/\(t.tag)") == nil
        letGo(t)
        do {
            _ = try ledger.inFlight(t.kind, release: true) { try client.release(ReleaseRequest(lease: t.tag)) }
        } catch let e as ControlError where livedOn && e.code == .notFound {
        } catch {
            refusedIfAnswered(t, "release", error)
        }
        unlink("\(mount)/\(t.tag)")
    }
    /// prezerod down, cut off or out of pages is fail-open; any other answer to a valid
    /// request (no such lease, above all) is a failure.
    func refusedIfAnswered(_ t: Tenant, _ what: String, _ error: any Error) {
        guard let e = error as? ControlError, ![.unreachable, .system, .tooManyConnections].contains(e.code) else { return }
        ledger.fail("\(t.tag): prezerod refused its \(what): \(e.code.rawValue): \(e.message)")
    }

    /// A libvirt domain's start: its directory, `prepare begin`, `start begin`, and the file QEMU would open.
    func hookStart(_ t: inout Tenant) {
        try? FileManager.default.createDirectory(atPath: domainDir(t), withIntermediateDirectories: true)
        hook(t, "prepare", "begin")
        let said = ledger.inFlight(t.kind) { hook(t, "start", "begin") }
        let path = domainDir(t) + "/pc.ram"
        if Files.status(followingPath: path) != nil { use(&t, path: path) } else { missed(t, failOpen: !said.isEmpty) }
    }
    /// Its stop: QEMU gone, libvirt's directory removed, then `stopped end` and `release end`.
    func hookEnd(_ t: Tenant) {
        letGo(t)
        try? FileManager.default.removeItem(atPath: domainDir(t))
        ledger.inFlight(t.kind, release: true) {
            hook(t, "stopped", "end")
            hook(t, "release", "end")
        }
    }

    /// The end of a tenant that lived on: a domain's stop, or a socket client's release.
    func end(_ t: Tenant) {
        if t.kind == .hook { hookEnd(t) } else { directEnd(t) }
    }

    /// `prezero launch` of a QEMU that preallocates the file; it ends by SIGTERM to the launcher
    /// (ending 0), kill -9 of QEMU (1), or kill -9 of the launcher and then of its orphaned QEMU (2).
    func launch(_ t: Tenant, ending: Int) {
        var t = t
        let qmp = "\(base)/\(t.tag).qmp", claims = "\(base)/\(t.tag).json", err = "\(base)/\(t.tag).err"
        defer { for f in [qmp, claims, err] { unlink(f) } }
        let launcher: Child
        do {
            // Its claim is in flight from the start until it has written what it got.
            launcher = try ledger.inFlight(t.kind) {
                let l = try Child([Binaries.prezero, "launch", "--socket", socket, "--timeout", "5", "--json-claims", claims,
                                   "--memory", "m0=\(t.bytes / MiB)M" + (t.nodes.first.map { "@\($0)" } ?? ""), "--"]
                                  + PoolTests.preallocQEMU(memPath: "{prezero:m0}", bytes: t.bytes, qmp: qmp), stderr: err)
                try? waitFor("prezero launch to claim", timeout: 30) { Files.status(followingPath: claims) != nil || !l.isRunning }
                return l
            }
        } catch {
            ledger.fail("\(t.tag): cannot start prezero launch: \(error)")
            return
        }
        var vmm: Int32?
        // Whatever happened, neither the launcher nor its QEMU outlives the tenant.
        defer {
            launcher.signal(SIGKILL)
            _ = try? launcher.wait(timeout: 30)
            if let vmm { kill(vmm, SIGKILL); _ = Processes.reap(vmm, timeout: 10) }
        }
        guard QMP.waitReady(socket: qmp, timeout: 60, alive: { launcher.isRunning }),
              let children = Files.readText("/proc/\(launcher.pid)/task/\(launcher.pid)/children"),
              let qemu = children.split(separator: " ").first.flatMap({ Int32($0) }) else {
            ledger.fail("\(t.tag): QEMU under prezero launch did not come up: \(Files.readText(err) ?? "")")
            return
        }
        vmm = qemu
        struct Claimed: Decodable { var outcome: String, path: String }
        let got = (try? JSONDecoder().decode([Claimed].self, from: Data(contentsOf: URL(fileURLWithPath: claims))))?.first
        if let got, got.outcome != ClaimOutcome.miss.rawValue {
            // QEMU's descriptor of the file: the only thing that holds it.
            use(&t, path: got.path.replacingOccurrences(of: "/proc/self/", with: "/proc/\(qemu)/"))
            sleepSeconds(Double.random(in: 0...0.05))
            letGo(t)
        } else {
            let said = Files.readText(err) ?? ""
            missed(t, failOpen: said.contains("not reachable") || said.contains("refused the claim"))
        }
        switch ending {
        case 0:
            launcher.signal(SIGTERM)
        case 1:
            kill(qemu, SIGKILL)
            ledger.add { $0.vmmKills += 1 }
        default:
            ledger.inFlight(t.kind, release: true) {
                launcher.signal(SIGKILL)
                _ = try? launcher.wait(timeout: 10)
                sleepSeconds(Double.random(in: 0.005...0.1))
                kill(qemu, SIGKILL)
                if !Processes.reap(qemu, timeout: 10) { ledger.fail("\(t.tag): orphaned QEMU \(qemu) did not exit") }
            }
            ledger.add { $0.launcherKills += 1; $0.vmmKills += 1 }
        }
        if let code = try? launcher.wait(timeout: 30), ending == 0, code != 0 && code != 128 + SIGTERM {
            ledger.fail("\(t.tag): prezero launch exited \(code): \(Files.readText(err) ?? "")")
        }
    }

    // MARK: checks

    /// With prezerod dead and only long-lived tenants left: every clean file reads back zero,
    /// no file is in two states or quarantined, the kernel's used pages are the mount's
    /// files' pages and others', and every living tenant's file is still in leased/.
    func deadCheck(_ when: String, living: [Tenant]) {
        var inodes: [UInt64: String] = [:]
        for s in Soak.states {
            for name in entries(s) {
                let path = "\(mount)/.prezero/\(s)/\(name)"
                guard let st = Files.status(followingPath: path) else { continue }
                if let other = inodes[st.inode] { ledger.fail("\(when): one file in two states: \(other) and \(s)/\(name)") }
                inodes[st.inode] = "\(s)/\(name)"
                if s == "clean" {
                    guard let r = SoakBytes.readBack(path) else { continue }
                    if r.nonZero > 0 { ledger.fail("\(when): clean/\(name) has \(r.nonZero) non-zero bytes") }
                    ledger.add { $0.checkerBytes += r.bytes; $0.nonZero += r.nonZero }
                }
                if s == "quarantine" {
                    let why = (Files.readText(logPath, limit: 1 << 26) ?? "").split(separator: "\n").filter { $0.contains(name) }.suffix(2)
                    ledger.fail("\(when): quarantined \(name): \(why)")
                }
            }
        }
        var seen = Set<UInt64>()
        var filePages: UInt64 = 0
        let walker = FileManager.default.enumerator(atPath: mount)
        while let rel = walker?.nextObject() as? String {
            guard let st = Files.status(followingPath: "\(mount)/\(rel)"), st.isRegular, seen.insert(st.inode).inserted else { continue }
            filePages += st.allocated / page2M
        }
        let c = HugePageCounters.host(pageSize: page2M)
        let used = (c?.total ?? 0) - (c?.free ?? 0)
        if used != filePages + others {
            ledger.fail("\(when): the kernel has \(used) pages in use, the mount's files hold \(filePages) and others \(others)")
        }
        let leasedNames = entries("leased")
        for t in living where t.mapping != nil {
            let leased = leasedNames.first { $0.hasPrefix(t.leaseKey + "~") }
            let inode = leased.flatMap { Files.status(followingPath: "\(mount)/.prezero/leased/\($0)")?.inode }
            if inode != t.inode { ledger.fail("\(when): \(t.tag)'s file (inode \(t.inode)) is not in leased/ (found \(leased ?? "nothing"))") }
            if t.kind == .hook && Files.status(followingPath: domainDir(t) + "/pc.ram")?.inode != t.inode {
                ledger.fail("\(when): \(t.tag)'s pc.ram is gone or another file")
            }
        }
        ledger.add { $0.checks += 1 }
    }

    /// After a restart: prezerod lists the lease of every living tenant.
    func restartCheck(_ when: String, living: [Tenant], leases: [String]?) {
        guard let leases else { return ledger.fail("\(when): no status after the restart") }
        for t in living where t.mapping != nil && !leases.contains(t.leaseKey) {
            ledger.fail("\(when): \(t.tag)'s lease \(t.leaseKey) is lost after the restart (leases: \(leases))")
        }
    }

    /// What a kill is aimed at: a fill in progress, or a claim or a release (and its take-back) by a tenant of a kind.
    enum Aim { case fill, claim(Tenant.Kind), release(Tenant.Kind) }

    /// Waits for the moment a kill is aimed at (at most 1.5 s), kills prezerod with -9, and
    /// counts what it cut short.
    func crash(_ pool: TestPool, aimingAt aim: Aim) {
        let end = monotonicSeconds() + 1.5
        func busy() -> Bool {
            switch aim {
            case .fill: return !entries("filling").isEmpty
            case .claim(let k): return ledger.counts.withLock { $0.claiming[k.rawValue, default: 0] > 0 }
            case .release(let k): return ledger.counts.withLock { $0.releasing[k.rawValue, default: 0] > 0 }
            }
        }
        // Spinning, not sleeping: a claim takes about a millisecond.
        while monotonicSeconds() < end && !busy() { sched_yield() }
        switch aim {
        case .claim, .release: sleepSeconds(Double.random(in: 0...0.002))
        default: break
        }
        let (claiming, releasing) = ledger.counts.withLock { ($0.claiming.filter { $0.value > 0 }.keys, $0.releasing.filter { $0.value > 0 }.keys) }
        pool.crash()
        var moments: [String] = []
        if !entries("filling").isEmpty { moments.append("mid-fill") }
        moments += claiming.map { "mid-claim (\($0))" } + releasing.map { "mid-release (\($0))" }
        ledger.add { c in
            c.prezerodKills += 1
            for m in moments.isEmpty ? ["idle"] : moments { c.kills[m, default: 0] += 1 }
        }
    }
}

extension PoolTests {
    /// The chaos soak, on real huge pages: tenants claim through the socket, the libvirt hook
    /// and `prezero launch` at once, each checks its file is zero before writing its own
    /// pattern over it; prezerod is killed with -9 at chosen moments (a fill, a claim
    /// or a release in progress), QEMU or the launcher sometimes too. After every kill (with
    /// prezerod dead, every short tenant gone) an independent checker reads every clean/ file,
    /// counts pages against the kernel's and looks for a file in two states; after every
    /// restart each living tenant's lease must be back. SOAK_CYCLES (default 200), SOAK_SEED.
    @Test("chaos soak: tenants through the socket, the hook and prezero launch; kill -9 of prezerod, QEMU and the launcher; nothing leaks, nothing is lost")
    func chaosSoak() throws {
        let env = ProcessInfo.processInfo.environment
        let cycles = Int(env["SOAK_CYCLES"] ?? "") ?? 200
        let seed = UInt64(env["SOAK_SEED"] ?? "") ?? UInt64(monotonicSeconds() * 1000)
        var rng = SeededRandom(seed)
        let target = 192 * MiB
        let pool = try TestPool(
            config: "min_free: 0\nrefill_delay_ms: 0\nreclaim_interval_ms: 50\nfill_chunk: 2M\nfill_bandwidth: 1G\n"
                + "request_timeout_ms: 3000\nqemu_conf: {base}/qemu.conf",
            mountConfig: "target: 192M\nfile_size: 16M")
        defer { pool.close() }
        let soak = try Soak(pool: pool)
        let ledger = soak.ledger
        let freeBefore = hostFreePages(page2M)
        Processes.adoptOrphans(true)
        defer { Processes.adoptOrphans(false) }
        let nodes = Numa.memoryNodes()
        let began = monotonicSeconds()
        print("soak: seed \(seed), \(cycles) cycles, nodes \(nodes), \(soak.others) huge pages held by others")
        try pool.start()
        try pool.waitClean(target)

        var living: [Tenant] = []
        var nextID = 1
        var done = 0
        for cycle in 1...cycles {
            done = cycle
            // This cycle's tenants, of every kind at random, and the living ones whose time is up.
            var fresh: [Tenant] = []
            for i in 0..<Int.random(in: 2...4, using: &rng) {
                let kind = Tenant.Kind.allCases.randomElement(using: &rng)!
                let bytes = UInt64([2, 4, 6, 8, 12, 16, 24, 32].randomElement(using: &rng)!) * MiB
                let onNode = Bool.random(using: &rng) ? [] : [nodes.randomElement(using: &rng)!]
                var t = Tenant(kind: kind, tag: "soak-\(cycle)-\(i)", bytes: bytes, nodes: onNode,
                               endCycle: kind == .launch ? cycle : cycle + Int.random(in: 0...2, using: &rng) / (kind == .direct ? 2 : 1))
                t.id = nextID
                nextID += 1
                fresh.append(t)
            }
            let ending = living.filter { $0.endCycle <= cycle }
            living.removeAll { $0.endCycle <= cycle }
            let endings = fresh.map { _ in Int.random(in: 0...4, using: &rng) }
            let delays = fresh.map { _ in Double.random(in: 0...0.2, using: &rng) }
            let kinds = fresh.map(\.kind) + ending.map(\.kind)
            let aim: Soak.Aim? = Int.random(in: 0...9, using: &rng) >= 7 ? nil
                : [.fill, .claim(kinds.randomElement(using: &rng)!), .release(kinds.randomElement(using: &rng)!)].randomElement(using: &rng)!
            let group = DispatchGroup()
            let kept = Mutex<[Tenant]>([])
            func failOpens() -> Int { ledger.counts.withLock { $0.misses.filter { $0.key.hasSuffix("fail-open") }.values.reduce(0, +) } }
            let failOpensBefore = failOpens()
            for (i, t) in fresh.enumerated() {
                let (e, delay) = (endings[i], delays[i])
                group.enter()
                Thread {
                    sleepSeconds(delay)
                    var t = t
                    switch t.kind {
                    case .direct:
                        soak.direct(&t, cycle: cycle)
                        if t.endCycle > cycle && t.mapping != nil { kept.withLock { $0.append(t) } }
                    case .launch: soak.launch(t, ending: e < 3 ? 0 : e - 2)
                    case .hook:
                        soak.hookStart(&t)
                        if t.endCycle > cycle { kept.withLock { $0.append(t) } } else { soak.hookEnd(t) }
                    }
                    group.leave()
                }.start()
            }
            for t in ending {
                group.enter()
                Thread { soak.end(t); group.leave() }.start()
            }
            if let aim { soak.crash(pool, aimingAt: aim) }
            group.wait()
            living += kept.withLock { $0 }
            // With prezerod up all along, nobody may have had to go on without it.
            if aim == nil && failOpens() > failOpensBefore {
                ledger.fail("cycle \(cycle): \(failOpens() - failOpensBefore) tenants failed open with prezerod running")
            }
            if aim != nil {
                soak.deadCheck("cycle \(cycle), after the kill", living: living)
                do {
                    try pool.start()
                } catch {
                    ledger.fail("cycle \(cycle): prezerod did not come back: \(error)")
                    break
                }
                soak.restartCheck("cycle \(cycle), after the restart", living: living, leases: try? pool.status().leases.map(\.lease))
            }
            if ledger.counts.withLock({ !$0.failures.isEmpty }) { break }
            if cycle % 50 == 0 {
                print("soak: cycle \(cycle)/\(cycles), \(ledger.counts.withLock { $0.prezerodKills }) kills, \(Int(monotonicSeconds() - began)) s")
            }
        }

        // The end: every tenant stops, the pool settles with nothing leased or dirty, the
        // checks run once more with prezerod stopped, and a drain gives every page back.
        for t in living { soak.end(t) }
        do {
            try waitFor("every lease taken back", timeout: 120) {
                let s = try pool.status()
                return s.leases.isEmpty && s.nodes.allSatisfy { $0.fillingBytes == 0 } && soak.entries("leased").isEmpty
            }
        } catch {
            ledger.fail("the end: \(error); leases \((try? pool.status().leases.map(\.lease)) ?? [])")
        }
        pool.stop()
        soak.deadCheck("the end", living: [])
        try pool.start()
        _ = try pool.client.drain()
        var lost: UInt64 = 0
        if (try? waitFor("the drained pages back", timeout: 30) { hostFreePages(page2M) == freeBefore }) == nil {
            lost = freeBefore - min(freeBefore, hostFreePages(page2M))
            ledger.fail("the end: \(lost) pages not back after the drain")
        }

        let c = ledger.counts.withLock { $0 }
        func list(_ d: [String: Int]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") }
        print("soak: \(done) cycles, \(c.prezerodKills) kills, \(c.tenantBytes + c.checkerBytes) bytes (\(ByteSize.format(c.tenantBytes + c.checkerBytes))) verified, \(c.nonZero) non-zero bytes, \(lost) pages lost")
        print("soak: kills \(list(c.kills)); \(c.vmmKills) of QEMU, \(c.launcherKills) of the launcher; \(c.checks) checks")
        print("soak: hand-overs \(list(c.handOvers)); misses \(list(c.misses)); \(ByteSize.format(c.tenantBytes)) read by tenants, "
              + "\(ByteSize.format(c.checkerBytes)) by the checker; \(Int(monotonicSeconds() - began)) s")
        for f in c.failures.prefix(20) { Issue.record("\(f)") }
        #expect(c.failures.isEmpty, "seed \(seed): \(c.failures.count) failures")
        #expect(c.handOvers.count == Tenant.Kind.allCases.count, "every path handed files over: \(c.handOvers)")
        #expect(["mid-fill", "mid-claim", "mid-release"].allSatisfy { m in c.kills.keys.contains { $0.hasPrefix(m) } },
                "prezerod was killed at every kind of moment: \(c.kills)")
    }
}
