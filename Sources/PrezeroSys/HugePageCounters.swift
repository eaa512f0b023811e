import CNuma
import Glibc
import PrezeroCShims

/// Kernel huge-page counters, from sysfs.
public enum HugePageCounters {
    /// One size's page counts, as sysfs gives them: `nr_hugepages`, `free_hugepages`, `surplus_hugepages`.
    public struct Counts: Sendable, Equatable {
        public var total: UInt64
        public var free: UInt64
        public var surplus: UInt64
    }

    static func dir(_ pageSize: UInt64) -> String { "hugepages-\(pageSize / 1024)kB" }

    /// Per-node counters for one page size; nil if the node or the size does not exist.
    public static func node(_ node: Int, pageSize: UInt64) -> Counts? {
        read("/sys/devices/system/node/node\(node)/hugepages/\(dir(pageSize))")
            ?? (node == 0 ? host(pageSize: pageSize) : nil)
    }

    /// Host-wide counters for one page size.
    public static func host(pageSize: UInt64) -> Counts? {
        read("/sys/kernel/mm/hugepages/\(dir(pageSize))")
    }

    /// Reserved (promised to mappings but not yet faulted) pages, host-wide.
    public static func reserved(pageSize: UInt64) -> UInt64 {
        value("/sys/kernel/mm/hugepages/\(dir(pageSize))/resv_hugepages") ?? 0
    }

    /// Page sizes the kernel supports, in bytes.
    public static func supportedPageSizes() -> [UInt64] {
        Files.list(path: "/sys/kernel/mm/hugepages").compactMap { name in
            guard name.hasPrefix("hugepages-"), name.hasSuffix("kB"),
                  let kb = UInt64(name.dropFirst("hugepages-".count).dropLast(2)) else { return nil }
            return kb * 1024
        }.sorted()
    }

    /// Sets how many pages of one size the host reserves (`nr_hugepages`).
    public static func setHostTotal(_ pages: UInt64, pageSize: UInt64) throws(SysError) {
        try Files.writeText("/sys/kernel/mm/hugepages/\(dir(pageSize))/nr_hugepages", "\(pages)\n")
    }

    static func read(_ base: String) -> Counts? {
        guard let total = value("\(base)/nr_hugepages"), let free = value("\(base)/free_hugepages") else { return nil }
        return Counts(total: total, free: free, surplus: value("\(base)/surplus_hugepages") ?? 0)
    }

    static func value(_ path: String) -> UInt64? {
        Files.readText(path).flatMap { UInt64($0.filter { !$0.isWhitespace }) }
    }
}
