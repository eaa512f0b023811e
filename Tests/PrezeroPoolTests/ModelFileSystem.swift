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

/// A page of a file: the node it sits on and what it holds.
struct Page: Equatable {
    var node: Int
    var content: Content
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
    var holders: [UInt64: Int] = [:]
    var journalEntries: [String: String] = [:]
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
        for p in f.pages.values { free[p.node, default: 0] += 1 }
        files[ino] = nil
    }

    func release(_ ino: UInt64, pagesFrom first: Int, to end: Int) {
        guard var f = files[ino] else { return }
        for i in f.pages.keys where i >= first && i < end {
            free[f.pages[i]!.node, default: 0] += 1
            f.pages[i] = nil
        }
        files[ino] = f
    }

    func pages(_ bytes: UInt64) -> Int { Int((bytes + pageSize - 1) / pageSize) }

    func perform(_ e: Effect) throws(EffectError) -> UInt64? {
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
                if case .zero(let f, let o, let l) = e, l >= 2 * pageSize {
                    try? zero(f, o, l / pageSize / 2 * pageSize)
                } else if case .journal(let k, let d?) = e {
                    journalEntries[k] = String(d.prefix(d.count / 2))
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
            return ino
        case .unlinkLink(let f, let dest):
            if let ino = inode(f), destinations[dest] == ino { removeDestination(dest) }
        case .zero(let f, let offset, let length):
            try zero(f, offset, length)
        case .verify(let f, let bytes):
            guard let ino = inode(f) else { throw error(2, e) }
            let p = files[ino]!.pages
            for i in 0..<pages(bytes) where p[i]?.content ?? .zero != .zero { throw error(74, e) }
        case .journal(let key, let dest):
            journalEntries[key] = dest
        }
        return nil
    }

    func zero(_ f: FileRef, _ offset: UInt64, _ length: UInt64) throws(EffectError) {
        guard let ino = inode(f) else { throw error(2, .zero(f, offset: offset, length: length)) }
        for i in Int(offset / pageSize)..<pages(offset + length) {
            guard files[ino]!.pages[i] != nil else {
                // A write to a hole would fault a page in from the daemon's context (SIGBUS when none is free).
                violations.append("zeroing wrote to a hole at page \(i) of \(f)")
                continue
            }
            files[ino]!.pages[i]!.content = .zero
        }
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
                                      held: (holders[ino] ?? 0) > 0, rootOnly: i.uid == 0 && i.permissions & 0o077 == 0,
                                      inode: ino))
            }
        }
        return out
    }

    func holders(mount: Int) -> Holders {
        Holders(inodes: Set(holders.filter { $0.value > 0 }.keys), complete: true)
    }

    func counters(_ k: NodeKey) -> NodeCounters {
        NodeCounters(free: UInt64(free[k.node] ?? 0) * pageSize, total: UInt64(totals[k.node] ?? 0) * pageSize)
    }

    func journal(_ lease: String) -> String? { journalEntries[lease] }

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
        var n = others[node] ?? 0
        let pool = Set(dirs.filter { $0.key != .leased }.values.flatMap(\.values))
        for (ino, f) in files where !pool.contains(ino) || (holders[ino] ?? 0) > 0 {
            n += f.pages.values.filter { $0.node == node }.count
        }
        return n
    }
}
