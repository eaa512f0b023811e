import Logging
import PrezeroCore
import PrezeroPool
import PrezeroProtocol
import PrezeroSys
import Synchronization
import Testing

/// One thing that happens to the pool. The picks are resolved against what exists
/// when the action runs, so that a sequence stays meaningful when shrunk.
enum Action: CustomStringConvertible {
    case claim(tenant: Int, pages: Int, nodes: [Int])
    case release(pick: Int)
    /// libvirt removes the domain's directory without a release.
    case removeDestination(pick: Int)
    /// A tenant's process closes its file, late.
    case close(pick: Int)
    case write(pick: Int)
    case discard(pick: Int, pages: Int)
    /// A holder pins its file's pages (an io_uring buffer, vmsplice), beyond its descriptor's life.
    case pin(pick: Int)
    case unpin(pick: Int)
    /// The next take-back of a file its tenant still holds open is raced by a link elsewhere.
    case linkRace
    case otherTake(node: Int, pages: Int)
    case otherReturn(node: Int)
    /// A launch the pool does not serve: make-room, then the pages are taken.
    case makeRoomAndTake(node: Int, pages: Int)
    /// One of a node's fill workers: each fills its own file, several at once.
    case work(node: Int, worker: Int, steps: Int)
    case monitor
    case sigterm

    var description: String {
        switch self {
        case .claim(let t, let p, let n): "claim T\(t) \(p) pages on \(n.isEmpty ? "any node" : "nodes \(n)")"
        case .release(let p): "release lease #\(p)"
        case .removeDestination(let p): "remove destination #\(p)"
        case .close(let p): "close holder #\(p)"
        case .write(let p): "write holder #\(p)"
        case .discard(let p, let n): "discard \(n) pages of holder #\(p)"
        case .pin(let p): "holder #\(p) pins its pages"
        case .unpin(let p): "pin #\(p) lets go"
        case .linkRace: "arm a link race"
        case .otherTake(let n, let p): "other user takes \(p) pages on node \(n)"
        case .otherReturn(let n): "other user returns its pages on node \(n)"
        case .makeRoomAndTake(let n, let p): "make-room \(p) pages on node \(n), then take them"
        case .work(let n, let w, let s): "worker \(w) of node \(n): \(s) steps"
        case .monitor: "monitor pass"
        case .sigterm: "SIGTERM and restart"
        }
    }
}

/// An action and the faults injected at its effects.
struct Step: CustomStringConvertible {
    var action: Action
    /// Seeds the faults of this step's effects; 0 injects none.
    var faultSeed: UInt64
    var description: String { faultSeed == 0 ? "\(action)" : "\(action) [faults \(faultSeed)]" }
}

/// Virtual time: a quarter second per step.
final class Clock: Sendable {
    let t = Mutex(0.0)
    var now: Double { t.withLock { $0 } }
    func advance(_ s: Double) { t.withLock { $0 += s } }
}

/// The simulated world: a model file system, the engine over it, the tenants.
final class World: @unchecked Sendable {
    static let nodes = [0, 1]
    static let pagesPerNode = 24
    static let pageSize: UInt64 = 2 << 20
    static let workersPerNode = 3

    let fs = ModelFileSystem(pageSize: pageSize, pagesPerNode: Dictionary(uniqueKeysWithValues: nodes.map { ($0, pagesPerNode) }))
    let config: Config
    let clock = Clock()
    var engine: PoolEngine!
    var jobs: JobRunner!
    /// The jobs in progress, by node and worker.
    var runs: [Int: [Int: JobRun]] = [:]
    struct Holding {
        var inode: UInt64
        var tenant: Int
    }
    var holdings: [Holding] = []
    /// Pins by tenant: what each pinner may read, whatever became of its file.
    var pins: [(id: Int, tenant: Int)] = []
    /// Every inode ever handed to a tenant: none may be handed out again.
    var handed: Set<UInt64> = []
    var dests: [(lease: String, dest: String)] = []
    var nextDest = 0
    var crashes = 0
    var steps = 0
    var violations: [String] = []
    let trace: Bool

    init(trace: Bool = false) {
        self.trace = trace
        var c = Config()
        c.target = .bytes(10 * Self.pageSize)
        c.fileSize = .bytes(4 * Self.pageSize)
        c.minFree = .bytes(2 * Self.pageSize)
        c.fillChunk = .bytes(Self.pageSize)
        c.refillDelayMs = 500
        c.fillWorkers = Self.workersPerNode
        config = c
        boot()
    }


    /// A start of prezerod: a fresh state, rebuilt from the model's directories alone.
    func boot() {
        runs = [:]
        while true {
            let state = PoolState(config: config, mounts: [(Self.pageSize, Self.nodes, MountConfig(path: "/sim"))])
            engine = PoolEngine(fs: fs, state: state, logger: Logger(label: "sim", factory: { _ in SwiftLogNoOpLogHandler() }),
                                clock: { [clock] in clock.now }, pause: { _ in }, wake: { _ in })
            jobs = JobRunner(engine: engine)
            do {
                try engine.recover()
            } catch {}
            guard fs.crashed else { return }
            crashes += 1
            fs.crashed = false
        }
    }

    func run(_ s: Step) {
        steps += 1
        clock.advance(0.25)
        var faults = SeededRandom(s.faultSeed)
        fs.faultAt = { _ in
            guard s.faultSeed != 0, faults.next() % 100 < 8 else { return nil }
            return Fault.allCases[Int(faults.next() % UInt64(Fault.allCases.count))]
        }
        perform(s.action)
        if trace {
            let st = engine.snapshot()
            print("step \(steps): \(s)\n  free \(fs.free) others \(fs.others) dirs \(fs.dirs.filter { !$0.value.isEmpty }.mapValues { $0.keys.sorted() })")
            print("  state \(st.keys.map { k in "\(k): clean \(st.nodes[k]!.clean) filling \(st.nodes[k]!.filling) held \(st.nodes[k]!.held)" }) abandoned \(st.abandoned) orphans \(fs.orphans.count)")
        }
        fs.faultAt = { _ in nil }
        if fs.crashed {
            crashes += 1
            fs.crashed = false
            boot()
        }
        check(after: s)
    }

    func key(_ n: Int) -> NodeKey { NodeKey(mount: 0, node: n) }

    func perform(_ a: Action) {
        switch a {
        case .claim(let tenant, let pages, let nodes):
            nextDest += 1
            let dest = "/vm/d\(nextDest)"
            let c = ClaimRequest(bytes: UInt64(pages) * Self.pageSize, pageSize: Self.pageSize, nodes: nodes, dest: dest,
                                 uid: UInt32(1000 + tenant), gid: 1000, mode: 0o600)
            guard let r = try? engine.claim(c, mount: 0), r.outcome != .miss, let lease = r.lease else { return }
            guard let ino = fs.hold(dest) else {
                violations.append("claim of \(dest) succeeded but nothing is there")
                return
            }
            if !handed.insert(ino).inserted { violations.append("inode \(ino) served a second tenant (\(dest))") }
            let f = fs.files[ino]!
            // The claimer checks its file before writing: all zero, the size asked, on the nodes asked.
            if f.pages.values.contains(where: { $0.content != .zero }) {
                violations.append("a claimer saw another tenant's data in \(dest): \(f.pages.values.map(\.content))")
            }
            if f.size != c.bytes { violations.append("\(dest) is \(f.size) bytes, not the \(c.bytes) claimed") }
            if let bad = f.pages.values.first(where: { !nodes.isEmpty && !nodes.contains($0.node) }) {
                violations.append("\(dest) has a page on node \(bad.node), not on \(nodes)")
            }
            if Set(f.pages.values.map(\.node)).count > 1 { violations.append("\(dest) spans nodes") }
            fs.write(ino, tenant: tenant)
            holdings.append(Holding(inode: ino, tenant: tenant))
            dests.append((lease, dest))
        case .release(let pick):
            guard !dests.isEmpty else { return }
            let (lease, _) = dests.remove(at: pick % dests.count)
            guard let l = engine.lease(lease) else { return }
            _ = try? engine.release(l)
        case .removeDestination(let pick):
            guard !dests.isEmpty else { return }
            let (_, dest) = dests.remove(at: pick % dests.count)
            fs.removeDestination(dest)
        case .close(let pick):
            guard !holdings.isEmpty else { return }
            fs.close(holdings.remove(at: pick % holdings.count).inode)
        case .write(let pick):
            guard !holdings.isEmpty else { return }
            let h = holdings[pick % holdings.count]
            fs.write(h.inode, tenant: h.tenant)
        case .discard(let pick, let pages):
            guard !holdings.isEmpty else { return }
            fs.discard(holdings[pick % holdings.count].inode, pages: pages)
        case .pin(let pick):
            guard !holdings.isEmpty else { return }
            let h = holdings[pick % holdings.count]
            pins.append((fs.pin(h.inode), h.tenant))
        case .unpin(let pick):
            guard !pins.isEmpty else { return }
            fs.unpin(pins.remove(at: pick % pins.count).id)
        case .linkRace:
            fs.linkRaceArmed = true
        case .otherTake(let node, let pages):
            fs.take(node: node, pages: pages)
        case .otherReturn(let node):
            fs.giveBack(node: node)
        case .makeRoomAndTake(let node, let pages):
            let inFlight = (runs[node] ?? [:]).values.reduce(0) { n, r in
                n + (fs.inode(r.ref).flatMap { fs.files[$0]?.pages.count } ?? 0)
            }
            // Without prezero, every page but those in use would be free for this launch. (Files an
            // earlier failure left to recovery are not the pool's to give back until a restart.)
            let known = Set(engine.snapshot().knownFiles(mount: 0))
            let left = fs.dirs.filter { $0.key != .leased }.flatMap { d in d.value.filter { !known.contains(FileRef(0, d.key, $0.key)) }.values }
            let leftPages = Set(left).reduce(0) { n, ino in n + (fs.files[ino]?.pages.values.filter { $0.node == node }.count ?? 0) }
            let available = Self.pagesPerNode - fs.pinned(node: node) - inFlight - leftPages
            let faultsBefore = fs.faults
            _ = try? engine.makeRoom(MakeRoomRequest(pageSize: Self.pageSize, pages: [String(node): UInt64(pages)]), mount: 0)
            let free = fs.free[node] ?? 0
            if pages <= available, free < pages, fs.faults == faultsBefore {
                violations.append("a launch needing \(pages) pages on node \(node) found \(free) free after make-room; without prezero \(available) would be")
            }
            fs.take(node: node, pages: pages)
        case .work(let node, let w, let n):
            for _ in 0..<n {
                if runs[node]?[w] == nil {
                    guard let job = jobs.nextJob(key(node)), job != .stop else { return }
                    runs[node, default: [:]][w] = jobs.begin(job, on: key(node))
                }
                // The first step of a job performs its first effect (create, take), so that the
                // state and the directories agree between steps.
                if jobs.advance(&runs[node]![w]!) == nil { runs[node]![w] = nil }
                if fs.crashed { return }
            }
        case .monitor:
            for n in Self.nodes {
                _ = engine.yieldIfShort(key(n))
                engine.trimToTarget(key(n))
            }
            engine.reclaim()
            engine.settleHeld()
        case .sigterm:
            engine.stop()
            for n in Self.nodes {
                for w in (runs[n] ?? [:]).keys.sorted() {
                    while jobs.advance(&runs[n]![w]!) != nil, !fs.crashed {}
                    if fs.crashed { break }
                }
                runs[n] = nil
            }
            if !fs.crashed { boot() }
        }
    }

    // MARK: invariants

    func check(after s: Step) {
        var v = fs.violations
        fs.violations = []
        let state = engine.snapshot()
        v += state.violations()
        var seen: [UInt64: FileRef] = [:]
        for (dir, names) in fs.dirs {
            for (name, ino) in names {
                let ref = FileRef(0, dir, name)
                if let other = seen[ino] { v.append("one file in two states: \(other) and \(ref)") }
                seen[ino] = ref
                guard let f = fs.files[ino] else {
                    v.append("\(ref) names no file")
                    continue
                }
                if dir == .clean {
                    if let t = f.pages.values.first(where: { $0.content != .zero }) {
                        v.append("clean/\(name) holds \(t.content)'s data")
                    }
                    if f.uid != 0 || f.mode != 0o600 { v.append("clean/\(name) is not root's 0600") }
                    if (fs.holders[ino] ?? 0) > 0 || fs.links(ino) > 1 { v.append("clean/\(name) is in use elsewhere") }
                }
                guard dir != .quarantine else { continue }
                // A lease with no name but leased/ (a claim cut short, a crash before its truncate)
                // is taken back whole by the reclaimer, whatever its name says: not lost.
                let abandonedClaim = dir == .leased && fs.links(ino) == 1
                let named = PoolFileName(entry: name)
                if let n = named {
                    if UInt64(f.pages.count) * fs.pageSize > n.bytes, !abandonedClaim {
                        v.append("\(ref) holds \(f.pages.count) pages, more than its \(n.bytes) bytes: pages lost to the pool's accounting")
                    }
                    if let p = f.pages.values.first(where: { $0.node != n.node }) {
                        v.append("\(ref) has a page on node \(p.node)")
                    }
                }
            }
        }
        for (k, nb) in state.nodes {
            // A chunk is set aside only while its allocation runs, never between steps.
            if nb.allocating != 0 { v.append("\(k): \(nb.allocating) bytes still set aside for an allocation") }
            // Workers filling at once plan together: a new file is planned only while what the
            // pool holds and will hold stays within the target. (A fill a crash cut short is
            // resumed whatever the target; it stops at the target instead.)
            let target = state.target(k, totalBytes: UInt64(Self.pagesPerNode) * fs.pageSize)
            let resumed = (runs[k.node] ?? [:]).values.compactMap { r -> PoolFileName? in
                if case .fill(let f, resume: true) = r.job { f } else { nil }
            }
            let planned = nb.filling.keys.filter { !resumed.contains($0) }
            if !planned.isEmpty, nb.cleanBytes + nb.fillingPlannedBytes > target {
                v.append("\(k): \(nb.cleanBytes) clean and \(nb.fillingPlannedBytes) being filled (\(planned.count) new), over the target of \(target)")
            }
            let busy = (runs[k.node] ?? [:]).count
            if nb.filling.count > busy { v.append("\(k): \(nb.filling.count) files filling with \(busy) workers at work") }
        }
        // Pages add up on every node: free + other users + every file's pages + pinned orphans.
        let known0 = state.knownFiles(mount: 0)
        for n in Self.nodes {
            let inFiles = fs.files.values.reduce(0) { $0 + $1.pages.values.filter { $0.node == n }.count }
            let orphaned = fs.orphans.filter { $0.page.node == n }
            let sum = (fs.free[n] ?? 0) + (fs.others[n] ?? 0) + inFiles + orphaned.count
            if sum != Self.pagesPerNode { v.append("node \(n): \(sum) pages accounted for, \(Self.pagesPerNode) reserved") }
            // Pages a take-back left pinned are held outside the pool, never lost to its accounting;
            // once the pinners let go, a monitor pass sees them back (unless other users cloud it).
            let held = (state.nodes[key(n)]?.heldBytes ?? 0) / fs.pageSize
            let pinnedByTakeBack = orphaned.filter(\.fromTakeBack).count
            if held < UInt64(pinnedByTakeBack) { v.append("node \(n): \(pinnedByTakeBack) pages pinned after a take-back, \(held) counted held") }
            if case .monitor = s.action, s.faultSeed == 0 {
                let u = fs.usage(key(n), files: known0)
                if held * fs.pageSize > u.inUse - min(u.inUse, u.inFiles) {
                    v.append("node \(n): \(held) pages still counted held after a monitor pass, more than the node uses outside the pool")
                }
            }
        }
        // No pinner or holder ever reads another tenant's data: no page it can reach holds any.
        for p in pins {
            if let bad = fs.pinned(by: p.id).first(where: { $0.content != .zero && $0.content != .tenant(p.tenant) }) {
                v.append("pin \(p.id) of T\(p.tenant) reads \(bad.content)'s data")
            }
        }
        for h in holdings {
            if let bad = fs.files[h.inode]?.pages.values.first(where: { $0.content != .zero && $0.content != .tenant(h.tenant) }) {
                v.append("holder T\(h.tenant) of inode \(h.inode) reads \(bad.content)'s data")
            }
        }
        // The state knows exactly the files in the directories (unless it abandoned some to recovery).
        let known = state.knownFiles(mount: 0)
        if Set(known).count != known.count { v.append("the state lists a file twice: \(known.sorted { $0.description < $1.description })") }
        let onDisk = Set(fs.dirs.filter { $0.key != .quarantine }.flatMap { d in d.value.keys.map { FileRef(0, d.key, $0) } })
        let phantoms = Set(known).subtracting(onDisk)
        if !phantoms.isEmpty { v.append("the state knows files that are not there: \(phantoms)") }
        if state.abandoned == 0 {
            let unknown = onDisk.subtracting(known)
            if !unknown.isEmpty { v.append("files the state does not know (pages lost until a restart): \(unknown)") }
        }
        // No two live leases share a file.
        // (A claim abandoned half-way never learnt its inode: 0; its file stays in leased/.)
        let live = state.leases.values.filter { !$0.claiming }
        let inodes = live.map { fs.inode($0.ref) }
        if inodes.contains(nil) { v.append("a lease whose leased/ file is gone") }
        if Set(inodes).count != inodes.count { v.append("two leases share a file") }
        for l in live where l.inode != 0 && fs.inode(l.ref) != l.inode { v.append("lease \(l.key) points at \(l.inode), not leased/\(l.leasedName)") }
        violations += v.map { "after step \(steps) (\(s)): \($0)" }
    }
}

/// A generated sequence of steps.
func sequence(seed: UInt64, length: Int) -> [Step] {
    var g = SeededRandom(seed)
    func r(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
    var out: [Step] = []
    for _ in 0..<length {
        let node = r(World.nodes.count)
        let a: Action
        switch r(100) {
        case 0..<16: a = .claim(tenant: r(1000), pages: 1 + r(7), nodes: [[], [0], [1], [0, 1]][r(4)])
        case 16..<24: a = .release(pick: r(8))
        case 24..<27: a = .removeDestination(pick: r(8))
        case 27..<33: a = .close(pick: r(8))
        case 33..<40: a = .write(pick: r(8))
        case 40..<43: a = .discard(pick: r(8), pages: 1 + r(3))
        case 43..<46: a = .otherTake(node: node, pages: 1 + r(8))
        case 46..<48: a = .otherReturn(node: node)
        case 48..<49: a = [.pin(pick: r(8)), .unpin(pick: r(8)), .linkRace][r(3)]
        case 51..<55: a = .makeRoomAndTake(node: node, pages: 1 + r(10))
        case 55..<85: a = .work(node: node, worker: r(World.workersPerNode), steps: 1 + r(6))
        case 85..<97: a = .monitor
        default: a = .sigterm
        }
        out.append(Step(action: a, faultSeed: r(100) < 25 ? g.next() | 1 : 0))
    }
    return out
}

struct Outcome {
    var violations: [String]
    var steps: Int
    var faults: Int
    var crashes: Int
}

func simulate(_ steps: [Step], trace: Bool = false) -> Outcome {
    let w = World(trace: trace)
    for s in steps {
        w.run(s)
        if !w.violations.isEmpty { break }
    }
    return Outcome(violations: w.violations, steps: w.steps, faults: w.fs.faults, crashes: w.crashes)
}

/// The shortest failing sequence found: cut after the failing step, then drop steps one
/// at a time while it still fails.
func shrink(_ steps: [Step]) -> [Step] {
    var best = Array(steps.prefix(simulate(steps).steps))
    var i = 0
    while i < best.count {
        var candidate = best
        candidate.remove(at: i)
        let o = simulate(candidate)
        if !o.violations.isEmpty {
            best = Array(candidate.prefix(o.steps))
        } else {
            i += 1
        }
    }
    return best
}

@Suite("pool state machine: deterministic simulation over the model file system")
struct Simulation {
    static let length = 60

    @Test("seeded sequences of claims, releases, holders, pins, link races, other users, fills, faults and crashes break no invariant")
    func sequences() {
        let env = Environment.value
        let seeds: [UInt64]
        if let one = env("SIM_SEED").flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let n = env("SIM_SEQUENCES").flatMap(Int.init) ?? 10_000
            let base = env("SIM_BASE").flatMap(UInt64.init) ?? 1
            seeds = (0..<UInt64(n)).map { base &+ $0 }
        }
        var steps = 0, faults = 0, crashes = 0, failed = 0
        for seed in seeds {
            let seq = sequence(seed: seed, length: Self.length)
            let o = simulate(seq)
            steps += o.steps
            faults += o.faults
            crashes += o.crashes
            guard let first = o.violations.first else { continue }
            failed += 1
            let short = shrink(seq)
            let again = simulate(short, trace: env("SIM_TRACE") != nil)
            Issue.record("""
                seed \(seed) broke an invariant after \(o.steps) steps: \(first)
                shortest failing sequence (\(short.count) steps): \(short.map(\.description).joined(separator: "; "))
                which ends: \(again.violations.first ?? first)
                replay: SIM_SEED=\(seed) swift test --filter Simulation
                """)
            if failed >= (env("SIM_MAX_FAILURES").flatMap(Int.init) ?? 3) { break }
        }
        print("simulation: \(seeds.count) sequences, \(steps) steps, \(faults) faults, \(crashes) crashes, \(failed) violations")
    }
}
