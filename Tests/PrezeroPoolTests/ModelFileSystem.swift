import PrezeroCore
import PrezeroPool

/// What a page holds: zeroes, or the data of tenant T.
enum Content: Equatable, CustomStringConvertible {
    case zero
    case tenant(Int)
    var description: String {
        switch self {
        case .zero: "0"
        case .tenant(let t): "T\(t)"
        }
    }
}

/// A page of a file: the node it sits on, what it holds, and the pins on it (an io_uring
/// buffer, a pipe's vmspliced page: references to the page, not to the file).
struct Page: Equatable {
    var node: Int
    var content: Content
    var pins: Set<Int> = []
}

/// A page that left its file while pinned: not free until its last pin goes.
struct Orphan: Equatable {
    var page: Page
    /// Punched by a take-back (the pool must count it as held outside), or by a tenant's own discard.
    var fromTakeBack: Bool
}

/// One hugetlbfs inode in the model.
struct ModelFile {
    var inode: UInt64
    var size: UInt64
    var pages: [Int: Page] = [:]  // page index -> page; absent = hole
    var uid: UInt32 = 0
    var gid: UInt32 = 0
    var mode: UInt32 = 0o600
    /// Names it has: in the pool directories and at destinations.
    var links = 1
    /// The pool state it was in before it reached `leased/` (for "handed out only from clean/").
    var cameFrom: FileState? = nil
}

/// A fault to inject at one effect.
enum Fault: CaseIterable, CustomStringConvertible {
    case noSpace, io, crossDevice, shortWrite, crash
    var description: String {
        switch self {
        case .noSpace: "ENOSPC"
        case .io: "EIO"
        case .crossDevice: "EXDEV"
        case .shortWrite: "short write"
        case .crash: "crash"
        }
    }
}

/// hugetlbfs, the pool directories, the destinations, the processes that hold files and
/// the other huge-page users, in memory. Single-threaded: the simulation drives it.
final class ModelFileSystem: PoolFileSystem, @unchecked Sendable {
    let pageSize: UInt64
    let totals: [Int: Int]  // pages per node
    var free: [Int: Int]
    var others: [Int: Int] = [:]  // pages other huge-page users hold, per node
    var files: [UInt64: ModelFile] = [:]
    var dirs: [FileState: [String: UInt64]] = [:]
    var destinations: [String: UInt64] = [:]
    /// Open file descriptions per inode: descriptors, mappings, descriptors in flight in a
    /// socket, io_uring registered files. No /proc scan sees all of them; the kernel's
    /// write lease does, and that is all the daemon asks.
    var holders: [UInt64: Int] = [:]
    var orphans: [Orphan] = []
    var nextPin = 1
    /// The next chown to root of a leased file that a tenant still holds open is raced by
    /// that tenant linking it elsewhere (`linkat` of its /proc/self/fd entry).
    var linkRaceArmed = false
    var raceLinks = 0
    var journalEntries: [String: String] = [:]
    var heldEntries: [String: (node: Int, bytes: UInt64)] = [:]
    var nextInode: UInt64 = 1
    /// Decides, per effect, whether to fail it and how (the simulation's seeded choice).
    var faultAt: (Effect) -> Fault? = { _ in nil }
    var crashed = false
    var faults = 0
    var violations: [String] = []

    init(pageSize: UInt64, pagesPerNode: [Int: Int]) {
        self.pageSize = pageSize
        totals = pagesPerNode
        free = pagesPerNode
        for s in FileState.allCases { dirs[s] = [:] }
    }

    func error(_ errno: Int32, _ e: Effect) -> EffectError { EffectError(errno: errno, message: "\(e): errno \(errno)") }

    func inode(_ f: FileRef) -> UInt64? { dirs[f.state]?[f.name] }

    func links(_ ino: UInt64) -> Int { files[ino]?.links ?? 0 }

    /// Removes a destination name (a release, or libvirt removing the domain's directory).
    func removeDestination(_ dest: String) {
        guard let ino = destinations.removeValue(forKey: dest) else { return }
        files[ino]?.links -= 1
        collect(ino)
    }

    /// Frees the pages of an inode no name and no process refers to any more.
    func collect(_ ino: UInt64) {
        guard links(ino) == 0, (holders[ino] ?? 0) == 0, let f = files[ino] else { return }
        for p in f.pages.values { drop(p, takeBack: false) }
        files[ino] = nil
    }

    /// A page leaves its file: back to the kernel, or (pinned) kept by its pins.
    func drop(_ p: Page, takeBack: Bool) {
        if p.pins.isEmpty { free[p.node, default: 0] += 1 } else { orphans.append(Orphan(page: p, fromTakeBack: takeBack)) }
    }

    func release(_ ino: UInt64, pagesFrom first: Int, to end: Int, takeBack: Bool = false) {
        guard var f = files[ino] else { return }
        for i in f.pages.keys where i >= first && i < end {
            drop(f.pages[i]!, takeBack: takeBack)
            f.pages[i] = nil
        }
        files[ino] = f
    }

    func pages(_ bytes: UInt64) -> Int { Int((bytes + pageSize - 1) / pageSize) }

    func perform(_ e: Effect) throws(EffectError) -> Observed? {
        if crashed { throw error(-1, e) }
        if let fault = faultAt(e) {
            faults += 1
            switch fault {
            case .crash:
                crashed = true
                throw error(-1, e)
            case .noSpace: throw error(28, e)
            case .io: throw error(5, e)
            case .crossDevice: throw error(18, e)
            case .shortWrite:
                // Half of the work, then the error: a write cut short.
                if case .journal(let k, let d?, let u) = e {
                    let text = LeaseRecord(dest: d, claimant: u).text
                    journalEntries[k] = String(text.prefix(text.count / 2))
                }
                throw error(5, e)
            }
        }
        switch e {
        case .create(let f):
            guard inode(f) == nil else { throw error(17, e) }
            let ino = nextInode
            nextInode += 1
            files[ino] = ModelFile(inode: ino, size: 0)
            dirs[f.state]![f.name] = ino
        case .allocate(let f, let offset, let length, let node):
            guard let ino = inode(f) else { throw error(2, e) }
            for i in Int(offset / pageSize)..<pages(offset + length) where files[ino]!.pages[i] == nil {
                // hugetlbfs keeps the pages it got when it runs out; the size grows only on success.
                guard free[node, default: 0] > 0 else { throw error(28, e) }
                free[node]! -= 1
                files[ino]!.pages[i] = Page(node: node, content: .zero)
            }
            files[ino]!.size = max(files[ino]!.size, offset + length)
        case .truncate(let f, let size):
            guard let ino = inode(f) else { throw error(2, e) }
            release(ino, pagesFrom: pages(size), to: Int.max)
            files[ino]!.size = size
        case .punch(let f, let offset, let length):
            guard let ino = inode(f) else { throw error(2, e) }
            release(ino, pagesFrom: Int(offset / pageSize), to: Int((offset + length) / pageSize))
        case .setOwner(let f, let uid, let gid, let mode):
            guard let ino = inode(f) else { throw error(2, e) }
            if linkRaceArmed, uid == 0, f.state == .leased, (holders[ino] ?? 0) > 0 {
                // The tenant, owner until this chown and holding the file open, links it elsewhere first.
                linkRaceArmed = false
                raceLinks += 1
                destinations["/keep/\(raceLinks)"] = ino
                files[ino]!.links += 1
            }
            files[ino]!.uid = uid
            files[ino]!.gid = gid
            files[ino]!.mode = mode
        case .rename(let f, let to):
            guard let ino = inode(f) else { throw error(2, e) }
            guard inode(to) == nil else { throw error(17, e) }
            dirs[f.state]![f.name] = nil
            dirs[to.state]![to.name] = ino
            if to.state == .leased { files[ino]!.cameFrom = f.state }
        case .unlink(let f):
            guard let ino = inode(f) else { throw error(2, e) }
            dirs[f.state]![f.name] = nil
            files[ino]?.links -= 1
            collect(ino)
        case .link(let f, let dest):
            guard let ino = inode(f) else { throw error(2, e) }
            guard destinations[dest] == nil else { throw error(17, e) }
            let file = files[ino]!
            if file.cameFrom != .clean {
                violations.append("handed out a file that came from \(file.cameFrom?.rawValue ?? "nowhere"), not clean/: \(f)")
            }
            destinations[dest] = ino
            files[ino]!.links += 1
            return .linked(inode: ino)
        case .unlinkLink(let f, let dest):
            if let ino = inode(f), destinations[dest] == ino { removeDestination(dest) }
        case .checkSole(let f):
            guard let ino = inode(f) else { throw error(2, e) }
            guard links(ino) == 1 else { throw error(EffectError.otherNames, e) }
        case .takeBack(let f, let node):
            guard let ino = inode(f) else { throw error(2, e) }
            // The write lease: refused while any other open file description exists.
            guard (holders[ino] ?? 0) == 0 else { throw error(EffectError.inUse, e) }
            let before = info(ino), freeBefore = free[node] ?? 0
            release(ino, pagesFrom: 0, to: Int.max, takeBack: true)
            let back = UInt64((free[node] ?? 0) - freeBefore) * pageSize
            dirs[f.state]![f.name] = nil
            files[ino]!.links -= 1
            let names = destinations.filter { $0.value == ino }.keys.sorted()
            collect(ino)
            return .tookBack(TakeBack(bytes: before.allocated, held: before.allocated - min(before.allocated, back),
                                      extraLinks: before.links - 1, names: names))
        case .journal(let key, let dest, let claimant):
            journalEntries[key] = dest.map { LeaseRecord(dest: $0, claimant: claimant).text }
        case .journalHeld(let key, _, let node, let bytes):
            heldEntries[key] = bytes.map { (node, $0) }
        }
        return nil
    }

    func info(_ ino: UInt64) -> FileInfo {
        let f = files[ino]!
        return FileInfo(inode: ino, links: UInt64(links(ino)), size: f.size, allocated: UInt64(f.pages.count) * pageSize,
                        uid: f.uid, gid: f.gid, permissions: f.mode)
    }

    func status(_ f: FileRef) throws(EffectError) -> FileInfo? {
        if crashed { throw EffectError(errno: -1, message: "crashed") }
        return inode(f).map(info)
    }

    func listing(mount: Int) throws(EffectError) -> [ListedFile] {
        var out: [ListedFile] = []
        for s in FileState.allCases {
            for (name, ino) in dirs[s]!.sorted(by: { $0.key < $1.key }) {
                let i = info(ino)
                out.append(ListedFile(state: s, name: name, isRegular: true, links: i.links, bytes: i.size,
                                      rootOnly: i.uid == 0 && i.permissions & 0o077 == 0, inode: ino))
            }
        }
        return out
    }

    func destinationInode(_ path: String, mount: Int) -> UInt64? { destinations[path] }

    func usage(_ k: NodeKey, files refs: [FileRef]) -> (inUse: UInt64, inFiles: UInt64) {
        let inFiles = refs.compactMap(inode).reduce(0) { n, ino in n + (files[ino]?.pages.values.filter { $0.node == k.node }.count ?? 0) }
        return (UInt64((totals[k.node] ?? 0) - (free[k.node] ?? 0)) * pageSize, UInt64(inFiles) * pageSize)
    }

    func counters(_ k: NodeKey) -> NodeCounters {
        NodeCounters(free: UInt64(free[k.node] ?? 0) * pageSize, total: UInt64(totals[k.node] ?? 0) * pageSize)
    }

    func journal(_ lease: String) -> LeaseRecord? { journalEntries[lease].flatMap(LeaseRecord.parse) }

    func heldJournal(mount: Int) -> [(id: String, node: Int, bytes: UInt64)] {
        heldEntries.sorted { $0.key < $1.key }.map { ($0.key, $0.value.node, $0.value.bytes) }
    }

    // MARK: the world outside the daemon

    /// A tenant opens and maps the file at a destination.
    func hold(_ dest: String) -> UInt64? {
        guard let ino = destinations[dest] else { return nil }
        holders[ino, default: 0] += 1
        return ino
    }

    func close(_ ino: UInt64) {
        holders[ino, default: 1] -= 1
        if holders[ino] == 0 { holders[ino] = nil }
        collect(ino)
    }

    /// A holding tenant writes its data over every page of its mapping.
    func write(_ ino: UInt64, tenant: Int) {
        guard files[ino] != nil else { return }
        for i in files[ino]!.pages.keys { files[ino]!.pages[i]!.content = .tenant(tenant) }
    }

    /// QEMU's discard: the guest gives some pages back.
    func discard(_ ino: UInt64, pages n: Int) {
        guard let f = files[ino] else { return }
        for i in f.pages.keys.sorted().prefix(n) { release(ino, pagesFrom: i, to: i + 1) }
    }

    /// A tenant pins every page of a file it holds (io_uring buffer registration, vmsplice):
    /// the pins outlive its descriptor and its mapping. Returns the pin.
    func pin(_ ino: UInt64) -> Int {
        let id = nextPin
        nextPin += 1
        for i in files[ino]?.pages.keys.map({ $0 }) ?? [] { files[ino]!.pages[i]!.pins.insert(id) }
        return id
    }

    /// The pinner lets go: orphaned pages with no pin left go back to the kernel.
    func unpin(_ id: Int) {
        for ino in files.keys { for i in files[ino]!.pages.keys { files[ino]!.pages[i]!.pins.remove(id) } }
        for i in orphans.indices { orphans[i].page.pins.remove(id) }
        for o in orphans where o.page.pins.isEmpty { free[o.page.node, default: 0] += 1 }
        orphans.removeAll { $0.page.pins.isEmpty }
    }

    /// Every page a pin holds, in files or orphaned.
    func pinned(by id: Int) -> [Page] {
        files.values.flatMap { $0.pages.values.filter { $0.pins.contains(id) } } + orphans.map(\.page).filter { $0.pins.contains(id) }
    }

    /// Another huge-page user takes pages on a node (as many as are free, up to `n`).
    @discardableResult
    func take(node: Int, pages n: Int) -> Int {
        let got = min(n, free[node] ?? 0)
        free[node, default: 0] -= got
        others[node, default: 0] += got
        return got
    }

    func giveBack(node: Int) {
        free[node, default: 0] += others[node] ?? 0
        others[node] = 0
    }

    /// Pages that nothing of prezero's could give back on a node: files in use by tenants and other users.
    func pinned(node: Int) -> Int {
        var n = (others[node] ?? 0) + orphans.filter { $0.page.node == node }.count
        let pool = Set(dirs.filter { $0.key != .leased }.values.flatMap(\.values))
        for (ino, f) in files where !pool.contains(ino) || (holders[ino] ?? 0) > 0 {
            n += f.pages.values.filter { $0.node == node }.count
        }
        return n
    }
}
