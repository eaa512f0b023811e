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
        /// Kills begun: counted before the signal, so that a request it cuts short sees it.
        var killsStarted = 0
        /// The files tenants hold right now, by inode: one handed to two at once is a leak.
        var held: Set<UInt64> = []
        /// Every inode handed to a tenant in the soak, and to whom: an inode serves one tenant
        /// only (hugetlbfs numbers its inodes from a counter, so a number never comes back in a run).
        var handed: [UInt64: String] = [:]
        /// Requests in flight right now, by tenant kind: what a kill cuts short.
        var claiming: [String: Int] = [:], releasing: [String: Int] = [:]
        /// This cycle's hostile tenant: 0 setting up, 1 ready (its technique in place), 2 released, 3 done;
        /// and the lease its file went out under.
        var hostileStage = 3, hostileLease: String?
        /// Hostile tenants: by "technique via" those set up and proven; misses (no file handed
        /// over); link races lost; reads of their own pattern back through the hidden reference
        /// after the release (proofs); audits through it and what they found that neither was
        /// the keeper's own pattern nor zero (bytes of others' data: must be 0).
        var hostile: [String: Int] = [:], hostileMisses: [String: Int] = [:], racesLost: [String: Int] = [:]
        var ownProofs = 0, audits = 0, foreignBlocks: UInt64 = 0, foreignBytes: UInt64 = 0
        /// Pages pinned outside the pool by keepers (io_uring buffers, pipes) whose files were
        /// taken back; pages prezerod counted held outside for them (the most seen per keeper),
        /// the most it counted at once; dead checks that found its held journal below the pins.
        var pinnedPages: UInt64 = 0, heldSeenPages: UInt64 = 0, heldMaxPages: UInt64 = 0, journalShort = 0
        var failures: [String] = []
    }
    let counts = Mutex(Counts())

    func add(_ body: (inout Counts) -> Void) { counts.withLock { body(&$0) } }
    func fail(_ s: String) { add { $0.failures.append(s) } }

    /// Runs `body` counted as a claim (or a release) of a tenant of `kind` in flight.
    func inFlight<T>(_ kind: Tenant.Kind, release: Bool = false, _ body: () throws -> T) rethrows -> T {
        try inFlight(kind.rawValue, release: release, body)
    }
    func inFlight<T>(_ kind: String, release: Bool = false, _ body: () throws -> T) rethrows -> T {
        add { if release { $0.releasing[kind, default: 0] += 1 } else { $0.claiming[kind, default: 0] += 1 } }
        defer { add { if release { $0.releasing[kind]! -= 1 } else { $0.claiming[kind]! -= 1 } } }
        return try body()
    }

    /// A tenant was handed the file `inode`: no one else may hold it now or have held it before.
    func handed(_ inode: UInt64, to tag: String) {
        add {
            if !$0.held.insert(inode).inserted { $0.failures.append("\(tag): handed inode \(inode), which another tenant holds") }
            if let before = $0.handed[inode] { $0.failures.append("\(tag): handed inode \(inode), which \(before) was handed before: an inode serves one tenant only") }
            $0.handed[inode] = tag
        }
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

/// A hostile tenant of the soak (Tests/hostile/hostile.c, as `make hostile` runs it): it
/// claims as the tenant uid, through the socket or `prezero launch`, checks its file is all
/// zero, writes its own pattern, hides a reference to the file where no /proc scan sees it,
/// and lets go. Its keeper, a process of that uid, lives on across prezerod's kills until
/// `endCycle`, and is audited through that reference at the end of every cycle.
private struct Hostile {
    enum Technique: String, CaseIterable { case scm, uringBuf = "uring-buf", uringFile = "uring-file", vmsplice, forkhop, linkrace }
    enum Via: String, CaseIterable { case socket, launch }
    /// QEMUs under libvirt run as one non-root uid; so does every hostile tenant (as `make hostile`).
    static let uid: UInt32 = 65534, gid: UInt32 = 65534
    let technique: Technique, via: Via
    let tag: String
    let bytes: UInt64
    let nodes: [Int]
    let endCycle: Int
    /// The lease its file went out under: its tag through the socket, `launch.<pid>.m0` under launch.
    var lease: String?
    /// From the keeper's ready line: its process group, the file's inode and size, the race's end (linkrace).
    var pgid: Int32 = 0
    var inode: UInt64 = 0, size: UInt64 = 0
    var race = ""
    /// The most prezerod counted held outside the pool for its lease.
    var heldSeen: UInt64 = 0
    var label: String { "\(technique.rawValue) \(via.rawValue)" }
    /// Its reference pins every huge page of the file (a registered buffer, a piece of each
    /// page in a pipe): once the file is punched, those pages are held outside the pool.
    var pins: Bool { technique == .uringBuf || technique == .vmsplice }
    /// Its reference keeps the file itself open (a descriptor in flight, a registered file, a
    /// descriptor that hops pids): the kernel refuses the take-back's lease, and the pattern stays.
    var keepsOpen: Bool { technique == .scm || technique == .uringFile || technique == .forkhop }
}

/// The soak's world, shared by every tenant thread: the pool's paths and the ledger.
private final class Soak: Sendable {
    let mount: String, socket: String, base: String, logPath: String
    let backing: String, hookConf: String, template: String
    /// The hostile tenant's binary (built into `base`), a CLI its uid may run, the directory on
    /// the mount its claims and second names go to, its keepers' sockets, and prezerod's held journal.
    let hostileBin: String, tenantCLI: String, hostileDir: String, keeperDir: String, heldJournal: String
    /// Process groups of the keepers alive now: whatever happens, none outlives the soak.
    let keeperGroups = Mutex<Set<Int32>>([])
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
        // The hostile tenant, built once per soak (liburing-dev: scripts/deps.sh).
        hostileBin = pool.base + "/hostile"
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("hostile/hostile.c").path
        let cc = try run(["/usr/bin/gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", hostileBin, source, "-luring"])
        guard cc.status == 0 else {
            throw TestFailure("\(source) does not build (liburing-dev: scripts/deps.sh): \(cc.err.split(separator: "\n").first { $0.contains("error") } ?? "")")
        }
        tenantCLI = try pool.copyCLI()
        hostileDir = pool.mount + "/hostile"
        keeperDir = pool.base + "/keepers"
        heldJournal = pool.base + "/state/held"
        for d in [hostileDir, keeperDir] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            guard chown(d, Hostile.uid, Hostile.gid) == 0, chmod(d, 0o700) == 0 else { throw TestFailure("chown \(d): \(String(cString: strerror(errno)))") }
        }
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
        ledger.handed(st.inode, to: t.tag)
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

    /// Is `pid` a QEMU whose parent is this process (an orphan it adopted)?
    static func adopted(_ pid: Int32) -> Bool {
        guard let stat = Files.readText("/proc/\(pid)/stat"), let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return false }
        let after = stat[stat.index(after: close)...].split(separator: " ")
        return stat[stat.index(after: open)..<close].hasPrefix("qemu") && after.count > 1 && Int32(after[1]) == getpid()
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
                                  + preallocQEMU(memPath: "{prezero:m0}", bytes: t.bytes, qmp: qmp), stderr: err)
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
            // QEMU is this process's to kill only once adopted (its launcher killed): a launcher
            // that ended reaped it, and its pid may be another process's by now (a fork-hop
            // tenant's keeper walks the pids round within seconds).
            if let vmm, Soak.adopted(vmm) { kill(vmm, SIGKILL); _ = Processes.reap(vmm, timeout: 10) }
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

    // MARK: hostile tenants

    func keeperSocket(_ h: Hostile) -> String { "\(keeperDir)/\(h.tag).sock" }
    func keeperLogPath(_ h: Hostile) -> String { "\(base)/\(h.tag).keeper.log" }
    /// The end of a keeper's log, on one line, for a failure's message.
    func keeperLog(_ h: Hostile) -> String {
        let tail = (Files.readText(keeperLogPath(h)) ?? "").split(separator: "\n").suffix(3)
        return tail.isEmpty ? "" : "; its keeper's log ends: " + tail.joined(separator: " | ")
    }
    func who(_ h: Hostile) -> String { "hostile \(h.tag) (\(h.label))" }

    /// `key=value` words of a line.
    static func fields(_ line: Substring) -> [String: String] {
        var f: [String: String] = [:]
        for w in line.split(separator: " ") {
            if let eq = w.firstIndex(of: "=") { f[String(w[..<eq])] = String(w[w.index(after: eq)...]) }
        }
        return f
    }
    /// `X/Y` as two numbers.
    static func fraction(_ s: String?) -> (UInt64, UInt64)? {
        guard let parts = s?.split(separator: "/"), parts.count == 2, let x = UInt64(parts[0]), let y = UInt64(parts[1]) else { return nil }
        return (x, y)
    }

    /// One command to a keeper: its answer line, or nil (and a failure) when it gave none.
    func ask(_ h: Hostile, _ command: String) -> Substring? {
        let r = try? run([hostileBin, "ask", keeperSocket(h), command], timeout: 90)
        guard let r, r.status == 0, let line = r.out.split(separator: "\n").first else {
            ledger.fail("\(who(h)): its keeper did not answer \(command): \(r?.out ?? "")\(r?.err ?? "")\(keeperLog(h))".replacingOccurrences(of: "\n", with: " "))
            return nil
        }
        return line
    }

    /// The count of kills so far: a request cut short by one (or made while prezerod was
    /// down) fails open; any other failure of a valid request is a failure of the soak.
    func killEpoch() -> Int { ledger.counts.withLock { $0.killsStarted } }

    /// A command as the tenant uid, as QEMU runs under libvirt.
    func asTenant(_ args: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=\(Hostile.uid)", "--regid=\(Hostile.gid)", "--clear-groups", "--"] + args
    }

    func hostileMissed(_ h: Hostile, failOpen: Bool) {
        ledger.add { $0.hostileMisses[h.label + (failOpen ? " fail-open" : " miss"), default: 0] += 1 }
    }

    /// The hostile tenant's whole turn: its claim, its technique set up and proven, its
    /// release (or its launch's end), its own pattern read back through the hidden reference
    /// alone. Returns the tenant with its keeper when one lives on holding a hidden reference.
    func hostile(_ h: Hostile) -> Hostile? {
        var h = h
        defer { ledger.add { $0.hostileStage = 3 } }
        let args = [h.technique.rawValue, "", "--sock", keeperSocket(h), "--uid", "\(Hostile.uid)", "--gid", "\(Hostile.gid)",
                    "--tag", h.tag, "--link-dir", hostileDir, "--log", keeperLogPath(h), "--lifetime", "900"]
        let nodeArgs = h.nodes.first.map { ["--node", "\($0)"] } ?? []
        struct Claimed: Decodable { var outcome: String, lease: String? }
        switch h.via {
        case .socket:
            let dest = "\(hostileDir)/\(h.tag)"
            let epoch = killEpoch()
            let claim = ledger.inFlight("hostile") {
                try? run(asTenant([tenantCLI, "claim", "--socket", socket, "--timeout", "5", "--size", "\(h.bytes / MiB)M", "--dest", dest,
                                   "--owner", "\(Hostile.uid):\(Hostile.gid)", "--mode", "600", "--lease", h.tag, "--json"] + nodeArgs))
            }
            let got = claim.flatMap { try? JSONDecoder().decode(Claimed.self, from: Data($0.out.utf8)) }
            guard let claim, claim.status == 0, let got, got.outcome != ClaimOutcome.miss.rawValue else {
                // As a socket client's: the claim may have been made before the answer was lost.
                unlink(dest)
                if claim?.status == 0 || claim?.status == 3 || killEpoch() != epoch {
                    hostileMissed(h, failOpen: claim?.status != 0)
                } else {
                    ledger.fail("\(who(h)): prezerod refused its claim: \(claim?.err ?? "")\(claim?.out ?? "")".replacingOccurrences(of: "\n", with: " "))
                }
                return nil
            }
            h.lease = got.lease ?? h.tag
            ledger.add { $0.hostileLease = h.lease }
            var a = args
            a[1] = dest
            let r = try? run([hostileBin] + a, timeout: 120)
            guard setUp(&h, out: r?.out ?? "", err: r?.err ?? "hostile did not run") else {
                unlink(dest)
                return nil
            }
            // The link race ended its lease itself, by removing its name, as libvirt does.
            if h.technique != .linkrace {
                let epoch = killEpoch()
                let rel = ledger.inFlight("hostile", release: true) {
                    try? run(asTenant([tenantCLI, "release", "--socket", socket, "--timeout", "5", "--dest", dest]))
                }
                if rel?.status != 0 && rel?.status != 3 && killEpoch() == epoch {
                    ledger.fail("\(who(h)): prezerod refused its release: \(rel?.err ?? "")\(rel?.out ?? "")".replacingOccurrences(of: "\n", with: " "))
                }
            }
            // Released or not (prezerod killed under it), its name goes: the lease has ended.
            unlink(dest)
        case .launch:
            let claims = "\(base)/\(h.tag).claims.json", out = "\(base)/\(h.tag).out", err = "\(base)/\(h.tag).err"
            defer { for f in [claims, out, err] { unlink(f) } }
            // On a miss (or without prezerod) {prezero:m0} is the mount: nothing to be hostile with.
            var a = args
            a[1] = "{prezero:m0}"
            let epoch = killEpoch()
            let launcher: Child
            do {
                launcher = try ledger.inFlight("hostile") {
                    let l = try Child([Binaries.prezero, "launch", "--socket", socket, "--timeout", "5", "--json-claims", claims,
                                       "--owner", "\(Hostile.uid):\(Hostile.gid)", "--memory", "m0=\(h.bytes / MiB)M" + (h.nodes.first.map { "@\($0)" } ?? ""),
                                       "--", "/bin/sh", "-c", "case \"$3\" in /proc/self/fd/*) exec \"$@\";; esac", "sh", hostileBin] + a,
                                      stdout: out, stderr: err)
                    try? waitFor("prezero launch to claim", timeout: 30) { Files.status(followingPath: claims) != nil || !l.isRunning }
                    return l
                }
            } catch {
                ledger.fail("\(who(h)): cannot start prezero launch: \(error)")
                return nil
            }
            defer {
                launcher.signal(SIGKILL)
                _ = try? launcher.wait(timeout: 30)
            }
            // The tenant prints its ready line and exits; the launch then releases and ends.
            try? waitFor("the hostile tenant under prezero launch", timeout: 120) {
                (Files.readText(out) ?? "").contains("\n") || !launcher.isRunning
            }
            let code = ledger.inFlight("hostile", release: true) { try? launcher.wait(timeout: 60) }
            let got = (try? JSONDecoder().decode([Claimed].self, from: Data(contentsOf: URL(fileURLWithPath: claims))))?.first
            guard let got, got.outcome != ClaimOutcome.miss.rawValue else {
                let said = Files.readText(err) ?? ""
                let failOpen = said.contains("not reachable") || said.contains("refused the claim") || killEpoch() != epoch
                if code != 0 && !failOpen { ledger.fail("\(who(h)): prezero launch exited \(code ?? -1) on a miss: \(said)".replacingOccurrences(of: "\n", with: " ")) }
                hostileMissed(h, failOpen: failOpen)
                return nil
            }
            h.lease = got.lease
            ledger.add { $0.hostileLease = h.lease }
            guard setUp(&h, out: Files.readText(out) ?? "", err: Files.readText(err) ?? "") else { return nil }
            if code != 0 { ledger.fail("\(who(h)): prezero launch exited \(code ?? -1): \(Files.readText(err) ?? "")".replacingOccurrences(of: "\n", with: " ")) }
        }
        ledger.add { $0.held.remove(h.inode); $0.hostileStage = 2 }
        // The proof that the technique held: after the release, its keeper reads its own
        // pattern back through the hidden reference alone. The link race's second name leads
        // to the taken-back inode, root's and empty: its proof is the race won (its keeper
        // read its pattern through that name, the name outlived the chown to root).
        if h.technique != .linkrace {
            guard let line = ask(h, "own") else { return h }
            let own = Soak.fraction(line.split(separator: " ").dropFirst().first.map(String.init))
            if let own, own.0 == own.1, own.1 > 0 {
                ledger.add { $0.ownProofs += 1 }
            } else {
                ledger.fail("\(who(h)): after its release its keeper read \(line) of its own pattern through its hidden reference: the technique did not hold, or its pages were scrubbed")
            }
        }
        return h
    }

    /// The keeper's ready line: its file was all zero (counted), its own pattern read back
    /// through the hidden reference alone. False when no keeper lives on: the set-up failed
    /// (a failure of the soak) or the link race was lost (counted, not a failure).
    func setUp(_ h: inout Hostile, out: String, err: String) -> Bool {
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("hostile-ready ") }) else {
            ledger.fail("\(who(h)): its technique could not be set up: \(err)\(out)\(keeperLog(h))".replacingOccurrences(of: "\n", with: " "))
            return false
        }
        let f = Soak.fields(line)
        h.pgid = Int32(f["pgid"] ?? "") ?? 0
        h.inode = UInt64(f["ino"] ?? "") ?? 0
        h.size = UInt64(f["size"] ?? "") ?? 0
        h.race = f["race"] ?? ""
        let pgid = h.pgid
        if pgid > 0 { keeperGroups.withLock { _ = $0.insert(pgid) } }
        let nz = UInt64(f["nonzero"] ?? "") ?? 0
        let (size, tag) = (h.size, "hostile \(h.tag)")
        ledger.add { $0.tenantBytes += size; $0.nonZero += nz }
        ledger.handed(h.inode, to: tag)
        if nz > 0 { ledger.fail("\(who(h)): \(nz) non-zero bytes in the file it was handed") }
        if h.technique == .linkrace && h.race != "won" {
            // Its file was made root's before a second name stood: nothing hidden, nothing to keep.
            ledger.add { $0.racesLost[h.label, default: 0] += 1; $0.held.remove(h.inode) }
            quit(h)
            return false
        }
        let own = Soak.fraction(f["own"])
        guard pgid > 0, let own, own.1 > 0, own.0 == own.1 else {
            ledger.fail("\(who(h)): its technique did not work: its keeper read \(f["own"] ?? "nothing") of its own pattern through the hidden reference alone: \(line)")
            ledger.add { $0.held.remove(h.inode) }
            quit(h)
            return false
        }
        ledger.add { $0.hostile[h.label, default: 0] += 1; $0.hostileStage = max($0.hostileStage, 1) }
        return true
    }

    /// At a cycle's end: every living keeper reads everything its hidden reference reaches.
    /// Nothing but its own pattern and zeros may be there (any other byte is another tenant's
    /// data), and its own pattern must be whole (its pages were neither scrubbed nor reused;
    /// the link race's name leads, once the file is taken back, to an inode it may not open).
    func audit(_ keepers: inout [Hostile], _ when: String, status: MountStatus?) {
        if let status {
            let held = status.nodes.reduce(UInt64(0)) { $0 + $1.heldBytes } / page2M
            ledger.add { $0.heldMaxPages = max($0.heldMaxPages, held) }
        }
        for i in keepers.indices {
            let h = keepers[i]
            if let status, let lease = h.lease {
                keepers[i].heldSeen = max(h.heldSeen, status.held.filter { $0.lease == lease }.reduce(0) { $0 + $1.bytes })
            }
            guard let line = ask(h, "audit") else { continue }
            let f = Soak.fields(line)
            let own = Soak.fraction(f["own"])
            let (blocks, bytes) = (UInt64(f["foreign"] ?? "") ?? 0, UInt64(f["bytes"] ?? "") ?? 0)
            ledger.add { $0.audits += 1; $0.foreignBlocks += blocks; $0.foreignBytes += bytes }
            if f["foreign"] == nil || own == nil {
                ledger.fail("\(when): \(who(h)): its keeper's audit made no sense: \(line)")
            } else if blocks > 0 || bytes > 0 {
                let first = line.range(of: " first=").map { String(line[$0.upperBound...]) } ?? ""
                ledger.fail("\(when): \(who(h)) read \(bytes) bytes of others' data (\(blocks) blocks) through its hidden reference; the first: '\(first)'")
            } else if h.technique != .linkrace, let own, own.0 != own.1 || own.1 == 0 {
                ledger.fail("\(when): \(who(h)): its own pattern is no longer whole through its hidden reference (\(line)): its pages were scrubbed or reused")
            }
        }
    }

    /// A keeper's end: it quits, and its process group is gone (its helper, an orphan this
    /// process adopted, reaped). Pages its reference pinned after its file was punched were
    /// held outside the pool; the next dead check (or the end) sees them free again.
    func quit(_ h: Hostile) {
        if h.pins, let lease = h.lease, h.pgid > 0, !entries("leased").contains(where: { $0.hasPrefix(lease + "~") }) {
            ledger.add { $0.pinnedPages += h.size / page2M; $0.heldSeenPages += h.heldSeen / page2M }
        }
        guard h.pgid > 0 else { return }
        _ = try? run([hostileBin, "ask", keeperSocket(h), "quit"], timeout: 30)
        let end = monotonicSeconds() + 10
        while kill(-h.pgid, 0) == 0 || errno != ESRCH {
            _ = Processes.reap(h.pgid, timeout: 0)
            if monotonicSeconds() > end {
                ledger.fail("\(who(h)): its keeper (process group \(h.pgid)) did not quit in 10 s")
                kill(-h.pgid, SIGKILL)
                _ = Processes.reap(h.pgid, timeout: 10)
                break
            }
            sleepSeconds(0.005)
        }
        _ = keeperGroups.withLock { $0.remove(h.pgid) }
    }

    /// Whatever happened, no keeper outlives the soak (nor keeps the mount busy).
    func killKeepers() {
        for g in keeperGroups.withLock({ $0 }) {
            kill(-g, SIGKILL)
            _ = Processes.reap(g, timeout: 10)
        }
        keeperGroups.withLock { $0.removeAll() }
    }

    /// Bytes prezerod's held journal (`<state_dir>/held/*`: the mount, the node, the bytes) has for this mount.
    func journalledHeld() -> UInt64 {
        Files.list(path: heldJournal).filter { !$0.hasPrefix(".") }.reduce(0) { sum, key in
            let f = (Files.readText("\(heldJournal)/\(key)") ?? "").split(separator: "\n")
            return sum + (f.count == 3 && f[0] == mount ? UInt64(f[2]) ?? 0 : 0)
        }
    }

    // MARK: checks

    /// With prezerod dead and only long-lived tenants left: every clean file reads back zero
    /// and is an inode no tenant had, no file is in two states or quarantined, the kernel's
    /// used pages are the mount's files' pages, others' and those the living keepers pin
    /// outside the pool, and every living tenant's file is still in leased/.
    ///
    /// Pinned pages are counted from the keepers, not from prezerod's held journal: the
    /// journal is written at the file's whole size before the punch and lowered only once
    /// prezerod sees the node's use outside its files fall, so with prezerod dead it may be
    /// above what is pinned (a kill after the punch freed pages, a keeper gone since) and
    /// cannot be held to an equality. A keeper's reference pins every huge page of its file
    /// (an io_uring buffer over the whole mapping, a piece of each page in a pipe); those the
    /// file no longer has (punched, or the inode gone from the mount) are outside the pool.
    /// The journal is held to what it promises: at least those pages (below them is counted).
    func deadCheck(_ when: String, living: [Tenant], keepers: [Hostile]) {
        var inodes: [UInt64: String] = [:]
        for s in Soak.states {
            for name in entries(s) {
                let path = "\(mount)/.prezero/\(s)/\(name)"
                guard let st = Files.status(followingPath: path) else { continue }
                if let other = inodes[st.inode] { ledger.fail("\(when): one file in two states: \(other) and \(s)/\(name)") }
                inodes[st.inode] = "\(s)/\(name)"
                if s == "clean" {
                    if let who = ledger.counts.withLock({ $0.handed[st.inode] }) {
                        ledger.fail("\(when): clean/\(name) is inode \(st.inode), which \(who) was handed: an inode serves one tenant only")
                    }
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
        // The pages: a keeper that just quit may take a moment to let go (the kernel tears an
        // io_uring ring down after its process is gone), so a mismatch is looked at again for 5 s.
        let deadline = monotonicSeconds() + 5
        var pages: (used: UInt64, files: UInt64, outside: UInt64)
        repeat {
            var inMount: [UInt64: UInt64] = [:]
            let walker = FileManager.default.enumerator(atPath: mount)
            while let rel = walker?.nextObject() as? String {
                guard let st = Files.status(followingPath: "\(mount)/\(rel)"), st.isRegular else { continue }
                inMount[st.inode] = st.allocated / page2M
            }
            let outside = keepers.filter(\.pins).reduce(UInt64(0)) { sum, h in
                sum + h.size / page2M - min(h.size / page2M, inMount[h.inode] ?? 0)
            }
            let c = HugePageCounters.host(pageSize: page2M)
            pages = ((c?.total ?? 0) - (c?.free ?? 0), inMount.values.reduce(0, +), outside)
            if pages.used == pages.files + others + pages.outside { break }
            sleepSeconds(0.1)
        } while monotonicSeconds() < deadline
        if pages.used != pages.files + others + pages.outside {
            ledger.fail("\(when): the kernel has \(pages.used) pages in use, the mount's files hold \(pages.files), others \(others) and keepers pin \(pages.outside) outside the pool")
        }
        if journalledHeld() < pages.outside * page2M {
            ledger.add { $0.journalShort += 1 }
        }
        let leasedNames = entries("leased")
        // A file a keeper still has open cannot have been taken back: the kernel refuses the lease.
        let leasedInodes = Set(leasedNames.compactMap { Files.status(followingPath: "\(mount)/.prezero/leased/\($0)")?.inode })
        for h in keepers where h.keepsOpen && !leasedInodes.contains(h.inode) {
            ledger.fail("\(when): \(who(h)) still has its file (inode \(h.inode)) open, yet it is not in leased/: it was taken back while open")
        }
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

    /// What a kill is aimed at: a fill in progress, or a claim or a release (and its take-back) by a tenant of a kind,
    /// or the take-back of the hostile tenant's file (its pages pinned, its file open, a second name).
    enum Aim { case fill, claim(Tenant.Kind), release(Tenant.Kind), hostileTakeBack }

    /// Waits for the moment a kill is aimed at (at most 1.5 s), kills prezerod with -9, and
    /// counts what it cut short.
    func crash(_ pool: TestPool, aimingAt aim: Aim, hostile: Hostile.Technique) {
        // A link race ends only when prezerod makes the file root's: it runs with prezerod up.
        if hostile == .linkrace {
            try? waitFor("the link race", timeout: 45) { ledger.counts.withLock { $0.hostileStage >= 1 } }
        }
        let end = monotonicSeconds() + 1.5
        func busy() -> Bool {
            switch aim {
            case .fill: return !entries("filling").isEmpty
            case .claim(let k): return ledger.counts.withLock { $0.claiming[k.rawValue, default: 0] > 0 }
            case .release(let k): return ledger.counts.withLock { $0.releasing[k.rawValue, default: 0] > 0 }
            case .hostileTakeBack: return ledger.counts.withLock { $0.hostileStage >= 2 }
            }
        }
        // Spinning, not sleeping: a claim takes about a millisecond.
        while monotonicSeconds() < end && !busy() { sched_yield() }
        switch aim {
        case .claim, .release: sleepSeconds(Double.random(in: 0...0.002))
        // The take-back comes within a reclaim pass (50 ms) of the release, later while the file is open.
        case .hostileTakeBack: sleepSeconds(Double.random(in: 0...0.15))
        default: break
        }
        let (claiming, releasing, hostileLease) = ledger.counts.withLock {
            ($0.claiming.filter { $0.value > 0 }.keys, $0.releasing.filter { $0.value > 0 }.keys, $0.hostileLease)
        }
        ledger.add { $0.killsStarted += 1 }
        pool.crash()
        var moments: [String] = []
        if !entries("filling").isEmpty { moments.append("mid-fill") }
        moments += claiming.map { "mid-claim (\($0))" } + releasing.map { "mid-release (\($0))" }
        if case .hostileTakeBack = aim, let lease = hostileLease {
            // Where the kill found the hostile file: still whole in leased/, punched in part (or
            // wholly, not yet unlinked), or gone.
            let leased = entries("leased").first { $0.hasPrefix(lease + "~") }
            let st = leased.flatMap { Files.status(followingPath: "\(mount)/.prezero/leased/\($0)") }
            moments.append(st == nil ? "hostile taken back" : st!.allocated < st!.size ? "hostile mid-take-back (punched)" : "hostile before its take-back")
        }
        ledger.add { c in
            c.prezerodKills += 1
            for m in moments.isEmpty ? ["idle"] : moments { c.kills[m, default: 0] += 1 }
        }
    }
}

extension HostTests {
    @Suite("the chaos soak", .tags(.hugePages, .qemu, .soak), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct ChaosSoak: HostSuite {
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
                    + "request_timeout_ms: 3000\nqemu_conf: {base}/qemu.conf\nallowed_uids: [\(Hostile.uid)]\nsocket_group: \"+\(Hostile.gid)\"\nuid_quota: 1G",
                mountConfig: "target: 192M\nfile_size: 16M")
            defer { pool.close() }
            let soak = try Soak(pool: pool)
            defer { soak.killKeepers() }
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
            // One hostile tenant a cycle: its technique and path drawn from a bag of every pair,
            // refilled and shuffled when empty, so that each turns up every 12 cycles.
            var keepers: [Hostile] = []
            var bag: [(Hostile.Technique, Hostile.Via)] = []
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
                if bag.isEmpty {
                    bag = Hostile.Technique.allCases.flatMap { t in Hostile.Via.allCases.map { (t, $0) } }.shuffled(using: &rng)
                }
                let (technique, via) = bag.removeLast()
                let hostile = Hostile(technique: technique, via: via, tag: "hostile-\(cycle)",
                                      bytes: UInt64([2, 4, 6, 8, 12, 16, 24, 32].randomElement(using: &rng)!) * MiB,
                                      nodes: Bool.random(using: &rng) ? [] : [nodes.randomElement(using: &rng)!],
                                      endCycle: cycle + Int.random(in: 0...2, using: &rng))
                let hostileDelay = Double.random(in: 0...0.2, using: &rng)
                let ending = living.filter { $0.endCycle <= cycle }
                living.removeAll { $0.endCycle <= cycle }
                let endings = fresh.map { _ in Int.random(in: 0...4, using: &rng) }
                let delays = fresh.map { _ in Double.random(in: 0...0.2, using: &rng) }
                let kinds = fresh.map(\.kind) + ending.map(\.kind)
                let aim: Soak.Aim? = Int.random(in: 0...9, using: &rng) >= 7 ? nil
                    : [.fill, .claim(kinds.randomElement(using: &rng)!), .release(kinds.randomElement(using: &rng)!), .hostileTakeBack].randomElement(using: &rng)!
                let group = DispatchGroup()
                let kept = Mutex<[Tenant]>([])
                let keptKeeper = Mutex<Hostile?>(nil)
                func failOpens() -> Int {
                    ledger.counts.withLock { ($0.misses.merging($0.hostileMisses) { $0 + $1 }).filter { $0.key.hasSuffix("fail-open") }.values.reduce(0, +) }
                }
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
                ledger.add { $0.hostileStage = 0; $0.hostileLease = nil }
                group.enter()
                Thread {
                    sleepSeconds(hostileDelay)
                    let k = soak.hostile(hostile)
                    keptKeeper.withLock { $0 = k }
                    group.leave()
                }.start()
                if let aim { soak.crash(pool, aimingAt: aim, hostile: hostile.technique) }
                group.wait()
                living += kept.withLock { $0 }
                if let k = keptKeeper.withLock({ $0 }) { keepers.append(k) }
                // prezerod dies only by the soak's hand.
                if aim == nil, let p = pool.process, !p.isRunning {
                    let lines = pool.log().split(separator: "\n")
                    let said = (lines.filter { $0.contains("rror") || $0.contains("atal") }.suffix(3) + lines.suffix(3)).joined(separator: " | ")
                    ledger.fail("cycle \(cycle): prezerod exited on its own (\(p.status.map { "status \($0)" } ?? "gone")): \(said)")
                }
                // With prezerod up all along, nobody may have had to go on without it.
                if aim == nil && failOpens() > failOpensBefore {
                    ledger.fail("cycle \(cycle): \(failOpens() - failOpensBefore) tenants failed open with prezerod running")
                }
                if aim != nil {
                    soak.deadCheck("cycle \(cycle), after the kill", living: living, keepers: keepers)
                    do {
                        try pool.start()
                    } catch {
                        ledger.fail("cycle \(cycle): prezerod did not come back: \(error)")
                        break
                    }
                    soak.restartCheck("cycle \(cycle), after the restart", living: living, leases: try? pool.status().leases.map(\.lease))
                }
                // Every keeper reads what its reference reaches; those whose time is up quit.
                soak.audit(&keepers, "cycle \(cycle)", status: try? pool.status())
                for h in keepers where h.endCycle <= cycle { soak.quit(h) }
                keepers.removeAll { $0.endCycle <= cycle }
                if ledger.counts.withLock({ !$0.failures.isEmpty }) { break }
                if cycle % 50 == 0 {
                    print("soak: cycle \(cycle)/\(cycles), \(ledger.counts.withLock { $0.prezerodKills }) kills, \(Int(monotonicSeconds() - began)) s")
                }
            }

            // The end: every tenant stops and every keeper quits, the pool settles with nothing
            // leased or dirty and nothing held outside it, the checks run once more with prezerod
            // stopped, and a drain gives every page back.
            for t in living { soak.end(t) }
            soak.audit(&keepers, "the end", status: try? pool.status())
            for h in keepers { soak.quit(h) }
            keepers.removeAll()
            do {
                try waitFor("every lease taken back", timeout: 120) {
                    let s = try pool.status()
                    return s.leases.isEmpty && s.nodes.allSatisfy { $0.fillingBytes == 0 } && soak.entries("leased").isEmpty
                }
            } catch {
                ledger.fail("the end: \(error); leases \((try? pool.status().leases.map(\.lease)) ?? [])")
            }
            // Pinned pages are back with the kernel once their keepers are gone: prezerod counts none held.
            var heldAtEnd: UInt64 = 0
            if (try? waitFor("nothing held outside the pool", timeout: 30) {
                heldAtEnd = try pool.status().nodes.reduce(0) { $0 + $1.heldBytes }
                return heldAtEnd == 0
            }) == nil {
                ledger.fail("the end: prezerod still counts \(heldAtEnd) bytes held outside the pool with every keeper gone (held: \((try? pool.status().held) ?? []))")
            }
            pool.stop()
            soak.deadCheck("the end", living: [], keepers: [])
            try pool.start()
            _ = try pool.client.drain()
            var lost: UInt64 = 0
            if (try? waitFor("the drained pages back", timeout: 30) { hostFreePages(page2M) == freeBefore }) == nil {
                lost = freeBefore - min(freeBefore, hostFreePages(page2M))
                ledger.fail("the end: \(lost) pages not back after the drain")
            }

            let c = ledger.counts.withLock { $0 }
            func list(_ d: [String: Int]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") }
            let hostileRuns = c.hostile.values.reduce(0, +)
            print("soak: \(done) cycles, \(c.prezerodKills) kills, \(c.tenantBytes + c.checkerBytes) bytes (\(ByteSize.format(c.tenantBytes + c.checkerBytes))) verified, \(c.nonZero) non-zero bytes, "
                  + "\(hostileRuns) hostile tenants read \(c.foreignBytes) bytes of others' data, \(lost) pages lost")
            print("soak: kills \(list(c.kills)); \(c.vmmKills) of QEMU, \(c.launcherKills) of the launcher; \(c.checks) checks")
            print("soak: hand-overs \(list(c.handOvers)); misses \(list(c.misses)); \(ByteSize.format(c.tenantBytes)) read by tenants, "
                  + "\(ByteSize.format(c.checkerBytes)) by the checker; \(Int(monotonicSeconds() - began)) s")
            print("soak: hostile: techniques set up and proven \(list(c.hostile)); misses \(list(c.hostileMisses)); link races lost \(list(c.racesLost)); "
                  + "own pattern read back after the release \(c.ownProofs) times; \(c.audits) audits, \(c.foreignBytes) bytes (\(c.foreignBlocks) blocks) of others' data read")
            print("soak: held outside the pool: \(c.pinnedPages) pages pinned by keepers after their files' take-back, \(c.heldSeenPages) of them counted by prezerod for their leases, "
                  + "at most \(c.heldMaxPages) at once, \(heldAtEnd / page2M) at the end; the held journal below the pins at \(c.journalShort) of \(c.checks) checks")
            for f in c.failures.prefix(20) { Issue.record("\(f)") }
            #expect(c.failures.isEmpty, "seed \(seed): \(c.failures.count) failures")
            #expect(c.handOvers.count == Tenant.Kind.allCases.count, "every path handed files over: \(c.handOvers)")
            #expect(["mid-fill", "mid-claim", "mid-release"].allSatisfy { m in c.kills.keys.contains { $0.hasPrefix(m) } },
                    "prezerod was killed at every kind of moment: \(c.kills)")
            #expect(c.foreignBytes == 0 && c.foreignBlocks == 0, "no hostile tenant read a byte of another tenant's data")
            #expect(heldAtEnd == 0 && lost == 0, "every pinned page came back: \(heldAtEnd) bytes held, \(lost) pages lost")
            if done >= 120 {
                // Every technique, through the socket and through launch, set up and proven at least once.
                let pairs = Hostile.Technique.allCases.flatMap { t in Hostile.Via.allCases.map { "\(t.rawValue) \($0.rawValue)" } }
                #expect(pairs.allSatisfy { c.hostile[$0, default: 0] > 0 }, "every hostile technique ran through both paths: \(c.hostile)")
                #expect(c.pinnedPages > 0 && c.heldSeenPages > 0, "pages pinned after a take-back were counted held outside the pool")
            }
        }
    }
}
