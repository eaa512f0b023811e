import PrezeroProtocol
import PrezeroSys

/// The host's huge-page pool, reserved for a run and given back after: the counts found
/// before are saved in one file, so that a second reservation in the same run (the tests
/// inside `make test`'s) keeps the first's, and `restore` writes them back however the run ended.
public enum HugePageReservation {
    public static let savedPath = "/run/prezero-hugepages.saved"
    public static let sizes: [UInt64] = [1 << 30, 2 << 20]

    /// One page size's want: `pages`, or where the host gives fewer, at least `atLeast`.
    public struct Want: Sendable, Equatable, CustomStringConvertible {
        public var pageSize: UInt64
        public var pages: UInt64
        public var atLeast: UInt64
        public init(pageSize: UInt64, pages: UInt64, atLeast: UInt64? = nil) {
            self.pageSize = pageSize
            self.pages = pages
            self.atLeast = min(atLeast ?? pages, pages)
        }

        /// `SIZE:PAGES[:AT_LEAST]`, as `prezero lab run --reserve` takes it: `2M:1088`, `1G:2`, `2M:1088:300`.
        public init?(_ text: String) {
            let parts = text.split(separator: ":").map(String.init)
            guard parts.count == 2 || parts.count == 3, let size = ByteSize.parse(parts[0]),
                  HugePageReservation.sizes.contains(size), let n = UInt64(parts[1]) else { return nil }
            let least = parts.count == 3 ? UInt64(parts[2]) : n
            guard let least else { return nil }
            self.init(pageSize: size, pages: n, atLeast: least)
        }

        public var description: String { "\(pages) x \(ByteSize.format(pageSize))" + (atLeast < pages ? " (at least \(atLeast))" : "") }
    }

    /// Reserves each want, 1 GiB pages first (2 MiB pages fragment memory so that 1 GiB pages
    /// may not be found after); never lowers a count the host has already. Returns the pages
    /// of each size the host then has, and whether this process saved the counts found (and
    /// so must `restore`): a lab inside another leaves that to the outer one. Throws, naming
    /// what it got, where a want's `atLeast` is not met; the caller restores.
    public static func reserve(_ wants: [Want]) throws -> (got: [UInt64: UInt64], owner: Bool) {
        let owner = try SavedSetting(path: savedPath).claim(found: sizes.map { String(HugePageCounters.host(pageSize: $0)?.total ?? 0) })
        try? Files.writeText("/proc/sys/vm/compact_memory", "1\n", mode: 0o200)
        var got: [UInt64: UInt64] = [:]
        for want in wants.sorted(by: { $0.pageSize > $1.pageSize }) {
            let have = HugePageCounters.host(pageSize: want.pageSize)?.total ?? 0
            if have < want.pages {
                try? HugePageCounters.setHostTotal(want.pages, pageSize: want.pageSize)
            }
            let now = HugePageCounters.host(pageSize: want.pageSize)?.total ?? 0
            guard now >= want.atLeast else {
                throw LabError("hugepages: asked for \(want), got \(now); free memory, or reserve them at boot (hugepagesz=\(ByteSize.format(want.pageSize)) hugepages=\(want.pages))")
            }
            got[want.pageSize] = now
        }
        return (got, owner)
    }

    /// Writes back the counts saved by the owning `reserve`, and forgets them. Nothing to do
    /// when nothing was reserved, or while a live lab other than this process owns them.
    public static func restore() throws {
        guard let saved = SavedSetting(path: savedPath).read(), !saved.ownedElsewhere else { return }
        let counts = saved.values.compactMap { UInt64($0) }
        for (size, n) in zip(sizes, counts).reversed() where HugePageCounters.host(pageSize: size) != nil {
            try HugePageCounters.setHostTotal(n, pageSize: size)
        }
        try Files.removePath(savedPath)
    }

    /// Nil when no huge page of any size is in use; else one line naming the pages and the
    /// hugetlbfs mounts, for a run that must be alone with huge pages (the host tests count them).
    public static func busy() -> String? {
        let used = HugePageCounters.supportedPageSizes().compactMap { size -> String? in
            guard let c = HugePageCounters.host(pageSize: size), c.total > c.free else { return nil }
            return "\(c.total - c.free) x \(ByteSize.format(size))"
        }
        guard !used.isEmpty else { return nil }
        let mounts = (Files.readText("/proc/mounts") ?? "").split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            return f.count > 2 && f[2] == "hugetlbfs" ? String(f[1]) : nil
        }
        return "hugepages: in use before the tests: \(used.joined(separator: ", ")) (hugetlbfs mounts: \(mounts.isEmpty ? "none" : mounts.joined(separator: " "))); the tests must be alone with huge pages: stop the VMs or processes that hold them and unmount what a killed run left"
    }

    /// How many 1 GiB pages, up to `max`, the host can reserve now: asked for, read, given back.
    public static func most1G(max: UInt64) -> UInt64 {
        let g: UInt64 = 1 << 30
        guard let before = HugePageCounters.host(pageSize: g)?.total else { return 0 }
        try? Files.writeText("/proc/sys/vm/compact_memory", "1\n", mode: 0o200)
        try? HugePageCounters.setHostTotal(Swift.max(before, max), pageSize: g)
        let got = HugePageCounters.host(pageSize: g)?.total ?? before
        try? HugePageCounters.setHostTotal(before, pageSize: g)
        return Swift.min(got, max)
    }
}
