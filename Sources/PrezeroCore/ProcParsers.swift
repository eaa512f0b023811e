import PrezeroProtocol

/// A hugetlbfs mount found in `/proc/self/mountinfo`.
public struct HugetlbfsMount: Equatable, Sendable {
    public var path: String
    /// From the `pagesize=` option; nil when the mount uses the default size.
    public var pageSizeOption: UInt64?
}

/// Parsers for the text files under /proc. Pure, so they are tested on recorded text.
public enum ProcParsers {
    /// hugetlbfs mounts from mountinfo text.
    public static func hugetlbfsMounts(mountinfo: String) -> [HugetlbfsMount] {
        mountinfo.split(separator: "\n").compactMap { line in
            // The optional fields end at the first " - "; the file system type follows it.
            guard let dash = line.firstRange(of: " - ") else { return nil }
            let left = line[..<dash.lowerBound].split(separator: " ")
            let right = line[dash.upperBound...].split(separator: " ")
            guard left.count >= 5, right.count >= 3, right[0] == "hugetlbfs" else { return nil }
            let options = right[2].split(separator: ",")
            let size = options.first { $0.hasPrefix("pagesize=") }
                .flatMap { ByteSize.parse(String($0.dropFirst("pagesize=".count))) }
            return HugetlbfsMount(path: unescape(String(left[4])), pageSizeOption: size)
        }
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// (device, inode) of every file mapping in `/proc/PID/maps` text.
    /// Device is `major:minor` in hex, as maps writes it.
    public static func mappedInodes(maps: String) -> Set<FileID> {
        var ids = Set<FileID>()
        for line in maps.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard f.count >= 5, let inode = UInt64(f[4]), inode != 0 else { continue }
            let dev = f[3].split(separator: ":")
            guard dev.count == 2, let major = UInt32(dev[0], radix: 16), let minor = UInt32(dev[1], radix: 16)
            else { continue }
            ids.insert(FileID(major: major, minor: minor, inode: inode))
        }
        return ids
    }

    /// When a process started, in seconds since the epoch, from its `/proc/PID/stat`
    /// (field 22, clock ticks after boot) and `/proc/stat`'s `btime`.
    public static func processStart(stat: String, procStat: String, ticksPerSecond: Double) -> Double? {
        // The command name may hold spaces and parentheses: fields count from the last ')'.
        guard let close = stat.lastIndex(of: ")"), ticksPerSecond > 0 else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        guard let line = procStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(Text.trimmed(line.dropFirst(6))) else { return nil }
        return boot + ticks / ticksPerSecond
    }

    /// `Hugepagesize:` from /proc/meminfo, in bytes.
    public static func defaultHugepageSize(meminfo: String) -> UInt64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("Hugepagesize:") {
            let f = line.split(separator: " ")
            if f.count >= 2, let kb = UInt64(f[1]) { return kb * 1024 }
        }
        return nil
    }

    /// A list of CPUs or nodes as the kernel writes them: `0-3,8,10-11`.
    public static func cpuList(_ text: String) -> [Int] {
        var out: [Int] = []
        for part in Text.trimmed(text).split(separator: ",") {
            let r = part.split(separator: "-")
            if r.count == 2, let a = Int(r[0]), let b = Int(r[1]), a <= b {
                out.append(contentsOf: a...b)
            } else if r.count == 1, let a = Int(r[0]) {
                out.append(a)
            }
        }
        return out
    }
}

/// A file's identity: device (major, minor) and inode.
public struct FileID: Hashable, Sendable {
    public var major: UInt32
    public var minor: UInt32
    public var inode: UInt64
    /// A file's identity from its device numbers and inode.
    public init(major: UInt32, minor: UInt32, inode: UInt64) {
        self.major = major
        self.minor = minor
        self.inode = inode
    }
}
