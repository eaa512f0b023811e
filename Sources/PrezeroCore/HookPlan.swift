import Foundation

/// What the daemon does for a domain at libvirt's `start begin`.
public enum HookDecision: Equatable, Sendable {
    /// Link a pre-zeroed file at each backend's path: `<domain dir>/<alias>`.
    case handOver(pageSize: UInt64, backends: [MemoryBackend])
    /// The domain will take huge pages itself: free that many pages per node first.
    /// Key "*" means any node (the guest is not bound).
    case makeRoom(pageSize: UInt64, pages: [String: UInt64], reason: String)
    /// Nothing to do, and why.
    case leaveAlone(String)
}

/// The libvirt facts the decision needs, besides the domain XML.
public struct HookHost: Sendable {
    /// `memory_backing_dir` from qemu.conf, if set.
    public var memoryBackingDir: String?
    /// Pool mounts and their page sizes.
    public var poolMounts: [(path: String, pageSize: UInt64)]
    /// The host's default huge-page size (for `<hugepages/>` without a size).
    public var defaultPageSize: UInt64

    public init(memoryBackingDir: String?, poolMounts: [(path: String, pageSize: UInt64)], defaultPageSize: UInt64) {
        self.memoryBackingDir = memoryBackingDir
        self.poolMounts = poolMounts
        self.defaultPageSize = defaultPageSize
    }

    /// The facts as read from qemu.conf and /proc/meminfo (2 MiB when it names no default size).
    public init(conf: QemuConf, meminfo: String, poolMounts: [(path: String, pageSize: UInt64)]) {
        self.init(memoryBackingDir: conf.memoryBackingDir, poolMounts: poolMounts,
                  defaultPageSize: ProcParsers.defaultHugepageSize(meminfo: meminfo) ?? (2 << 20))
    }

    /// The pool mount holding `memory_backing_dir`, if any.
    public var backingMount: (path: String, pageSize: UInt64)? {
        guard let dir = memoryBackingDir.map(HookPlanner.normalize) else { return nil }
        return poolMounts.filter { dir == HookPlanner.normalize($0.path) || dir.hasPrefix(HookPlanner.normalize($0.path) + "/") }
            .max { HookPlanner.normalize($0.path).count < HookPlanner.normalize($1.path).count }
    }
}

public enum HookPlanner {
    /// Eligible: file source, shared access, no `<hugepages/>`, `memory_backing_dir` on a
    /// pool mount, sizes in whole pages. Otherwise, if the guest will take huge pages
    /// anyway, make room for it; else leave it alone. Every outcome says why.
    public static func decide(_ d: DomainMemory, host: HookHost) -> HookDecision {
        let total = UInt64(min(d.backends.reduce(0.0) { $0 + Double($1.bytes) }, Double(UInt64.max / 2)))
        if d.hugepages {
            let ps = d.hugepageSize ?? host.defaultPageSize
            return .makeRoom(pageSize: ps, pages: pagesPerNode(d.backends, pageSize: ps),
                             reason: "<hugepages/>: libvirt gives QEMU a directory, so nothing can be handed over; making room for \(ByteSize.format(total))")
        }
        guard d.fileSource else { return .leaveAlone("guest memory is not file-backed (no <source type='file'/>): not on huge pages") }
        guard let dir = host.memoryBackingDir else { return .leaveAlone("qemu.conf sets no memory_backing_dir: guest memory is not on huge pages") }
        guard let mount = host.backingMount else {
            return .leaveAlone("memory_backing_dir \(dir) is not on a pool mount (\(host.poolMounts.map(\.path).joined(separator: ", ")))")
        }
        let ps = mount.pageSize
        if let private_ = d.backends.first(where: { !$0.shared }) {
            return .makeRoom(pageSize: ps, pages: pagesPerNode(d.backends, pageSize: ps),
                             reason: "\(private_.alias) is not mapped shared (<access mode='shared'/>): QEMU would copy every page it writes, so it is not handed over; making room")
        }
        if let odd = d.backends.first(where: { $0.bytes % ps != 0 || $0.bytes == 0 }) {
            return .makeRoom(pageSize: ps, pages: pagesPerNode(d.backends, pageSize: ps),
                             reason: "\(odd.alias) is \(odd.bytes) bytes, not a whole number of \(ByteSize.format(ps)) pages; making room")
        }
        return .handOver(pageSize: ps, backends: d.backends)
    }

    /// Pages each node must have free; unbound backends count under "*".
    public static func pagesPerNode(_ backends: [MemoryBackend], pageSize: UInt64) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for b in backends {
            guard pageSize > 0 else { continue }
            let pages = b.bytes / pageSize + (b.bytes % pageSize == 0 ? 0 : 1)
            if b.hostNodes.isEmpty {
                out["*", default: 0] += pages
            } else {
                // Bound to several nodes: the kernel may take them from any; ask each for its share, rounded up.
                let share = (pages + UInt64(b.hostNodes.count) - 1) / UInt64(b.hostNodes.count)
                for n in b.hostNodes { out[String(n), default: 0] += share }
            }
        }
        return out
    }

    public static func normalize(_ path: String) -> String {
        "/" + path.split(separator: "/").joined(separator: "/")
    }

    /// The directory libvirt creates for a domain under `memory_backing_dir`:
    /// `<dir>/libvirt/qemu/<id>-<name cut to 20>`. libvirt cuts the name to 20
    /// characters when its locale can decode the name as multibyte text, and to
    /// 20 bytes when it cannot (the C locale with a non-ASCII name). Both candidates
    /// are returned, the character rule first; a byte cut that splits a character
    /// cannot be a String and is left out.
    public static func domainDirectories(backingDir: String, id: Int, name: String) -> [String] {
        let base = normalize(backingDir) + "/libvirt/qemu/"
        var names = ["\(id)-" + String(String.UnicodeScalarView(name.unicodeScalars.prefix(20)))]
        let bytes = Array(name.utf8.prefix(20))
        if let cut = String(validating: bytes, as: UTF8.self), !names.contains("\(id)-\(cut)") {
            names.append("\(id)-\(cut)")
        }
        return names.map { base + $0 }
    }
}

/// The few qemu.conf settings prezero needs.
public struct QemuConf: Equatable, Sendable {
    public var memoryBackingDir: String?
    public var user: String?
    public var group: String?

    /// Parses `key = "value"` lines, ignoring comments.
    public static func parse(_ text: String) -> QemuConf {
        var c = QemuConf()
        for raw in settingLines(text) {
            let kv = raw.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, !kv[0].contains("#") else { continue }
            let key = kv[0].trimmingCharacters(in: .whitespaces)
            // A quoted value, then at most a comment: `#` inside the quotes is part of it.
            let rest = kv[1].trimmingCharacters(in: .whitespaces)
            guard rest.hasPrefix("\""), let close = rest.dropFirst().firstIndex(of: "\"") else { continue }
            let value = String(rest[rest.index(after: rest.startIndex)..<close])
            let tail = rest[rest.index(after: close)...].trimmingCharacters(in: .whitespaces)
            guard tail.isEmpty || tail.hasPrefix("#") else { continue }
            switch key {
            case "memory_backing_dir": c.memoryBackingDir = value
            case "user": c.user = value
            case "group": c.group = value
            default: break
            }
        }
        return c
    }

    /// The lines that are not blank or comments. Most of a stock qemu.conf is comments,
    /// and this parse runs on every domain start: they are skipped as bytes.
    static func settingLines(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var out: [String] = []
        var i = 0
        while i < bytes.count {
            var end = i
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            var first = i
            while first < end && (bytes[first] == UInt8(ascii: " ") || bytes[first] == UInt8(ascii: "\t")) { first += 1 }
            if first < end && bytes[first] != UInt8(ascii: "#") {
                out.append(String(decoding: bytes[first..<end], as: UTF8.self))
            }
            i = end + 1
        }
        return out
    }
}
