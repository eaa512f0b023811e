import PrezeroCore
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

/// A hugetlbfs mount the daemon keeps a pool on, as found on this host.
public struct PoolMount: Sendable {
    public var path: String
    public var pageSize: UInt64
    public var nodes: [Int]
    public var config: MountConfig
}

/// Why the host cannot hold a pool, with the fix.
public struct HostError: Error, CustomStringConvertible {
    public var description: String
    /// An error with the message that names the fix.
    public init(description: String) { self.description = description }
}

/// The host's facts, read in this one place for the daemon, the hook's handler and the CLI:
/// the hugetlbfs mounts and their page sizes, the pool mounts a config names (or libvirt's),
/// /proc/meminfo and mountinfo, and libvirt's QEMU capabilities cache.
public enum HostDiscovery {
    /// This process's /proc/self/mountinfo; empty if it cannot be read.
    public static func mountinfo() -> String { Files.readText("/proc/self/mountinfo") ?? "" }
    /// The host's /proc/meminfo; empty if it cannot be read.
    public static func meminfo() -> String { Files.readText("/proc/meminfo") ?? "" }

    /// The hugetlbfs mounts this process sees, with their page sizes, from mountinfo.
    public static func hugetlbfsMounts() -> [HugetlbfsMount] { ProcParsers.hugetlbfsMounts(mountinfo: mountinfo()) }

    /// The first non-nil `pick` of the XML files in libvirt's capabilities cache `dir` (where
    /// libvirt caches what it probed of each QEMU binary, `virQEMUCapsFormatCache`), read one
    /// at a time, each up to `limit` bytes (a whole file is ~200 KB, and a hook call waits on them).
    public static func firstInCapabilitiesCache<T>(_ dir: String, limit: Int = 1 << 22, _ pick: (String) -> T?) -> T? {
        for name in Files.list(path: dir).sorted() where name.hasSuffix(".xml") {
            if let found = pick(Files.readText("\(dir)/\(name)", limit: limit) ?? "") { return found }
        }
        return nil
    }

    /// The version of the libvirt that wrote the capabilities cache `dir`: the `<selfvers>` near
    /// the top of its files (only their first 4 KiB are read). nil when there is no cache.
    public static func cachedLibvirtVersion(_ dir: String) -> LibvirtVersion? {
        firstInCapabilitiesCache(dir, limit: 4096) { LibvirtVersion.cached(capsXML: $0) }
    }

    /// The host node of each CPU, from /sys/devices/system/node/node*/cpulist; empty where the
    /// kernel has no NUMA.
    public static func cpuNodes() -> [Int: Int] {
        var out: [Int: Int] = [:]
        let dir = "/sys/devices/system/node"
        for name in Files.list(path: dir) where name.hasPrefix("node") {
            guard let node = Int(name.dropFirst(4)) else { continue }
            for cpu in ProcParsers.cpuList(Files.readText("\(dir)/\(name)/cpulist") ?? "") { out[cpu] = node }
        }
        return out
    }

    /// The page size of the hugetlbfs mounted at `path`, read with statfs; throws if it is not hugetlbfs.
    public static func pageSize(ofMount path: String) throws -> UInt64 {
        let dir: Descriptor
        do {
            dir = try Files.openDirectory(path: path)
        } catch {
            throw HostError(description: "cannot open pool mount \(path): \(error); mount one with: mkdir -p \(path) && mount -t hugetlbfs -o pagesize=2M none \(path)")
        }
        let fs = try Files.filesystem(dir)
        guard fs.magic == Files.hugetlbfsMagic else {
            throw HostError(description: "\(path) is not a hugetlbfs mount; mount one with: mount -t hugetlbfs -o pagesize=2M none \(path)")
        }
        return fs.blockSize
    }

    /// The mounts the configuration names, or, when it names none, the ones libvirt is
    /// configured to use (see `DefaultPoolMounts`); then `chosen` says which and why, for the log.
    public static func poolMounts(_ config: Config) throws -> (mounts: [PoolMount], chosen: String?) {
        guard config.mounts.isEmpty else { return (try poolMounts(config.mounts), nil) }
        let fix = "list the pool mounts under mounts: in the prezerod config"
        guard let text = Files.readText(config.qemuConf) else {
            throw HostError(description: "mounts: is not set and libvirt's \(config.qemuConf) cannot be read to find the mounts libvirt uses; \(fix)")
        }
        let conf: QemuConf
        do {
            conf = try QemuConf.parse(text)
        } catch {
            throw HostError(description: "mounts: is not set and \(config.qemuConf) cannot be read as libvirt reads it (\(error.description)); \(fix)")
        }
        let (chosen, skipped) = DefaultPoolMounts.choose(conf: conf, hostMounts: hugetlbfsMounts().map(\.path))
        let passed = skipped.isEmpty ? "" : " (\(skipped.joined(separator: "; ")))"
        guard !chosen.isEmpty else {
            throw HostError(description: "mounts: is not set and \(config.qemuConf) names no hugetlbfs mount libvirt uses (hugetlbfs_mount, or a memory_backing_dir on hugetlbfs)\(passed); \(fix)")
        }
        let mounts = try poolMounts(chosen.map { MountConfig(path: $0.path) })
        return (mounts, "mounts: is not set: pooling only the hugetlbfs mounts libvirt is configured to use in \(config.qemuConf): \(chosen.map(\.description).joined(separator: ", "))\(passed)")
    }

    static func poolMounts(_ configured: [MountConfig]) throws -> [PoolMount] {
        let nodes = Numa.memoryNodes()
        var out: [PoolMount] = []
        for m in configured {
            let size = try pageSize(ofMount: m.path)
            guard let host = HugePageCounters.host(pageSize: size), host.total > 0 else {
                throw HostError(description: "no \(ByteSize.format(size)) huge pages are reserved for \(m.path); reserve some: echo N > /sys/kernel/mm/hugepages/hugepages-\(size / 1024)kB/nr_hugepages")
            }
            out.append(PoolMount(path: m.path, pageSize: size, nodes: nodes, config: m))
        }
        return out
    }
}
