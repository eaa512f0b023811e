import ArgumentParser
import PrezeroCore
import PrezeroProtocol

// The CLI's typed arguments: each parsed once, where ArgumentParser reads it, with
// its format in the usage error.

/// A size: 2G, 512M, or a byte count.
struct Size: ExpressibleByArgument, Equatable, CustomStringConvertible {
    var bytes: UInt64
    init(bytes: UInt64) { self.bytes = bytes }
    init?(argument: String) {
        guard let b = ByteSize.parse(argument) else { return nil }
        bytes = b
    }
    var description: String { ByteSize.format(bytes) }
    var defaultValueDescription: String { description }
}

/// A huge-page size prezero pools: 2M or 1G.
struct PageSize: ExpressibleByArgument, Equatable {
    var bytes: UInt64
    init?(argument: String) {
        guard let b = ByteSize.parse(argument), b == 2 << 20 || b == 1 << 30 else { return nil }
        bytes = b
    }
    static var allValueStrings: [String] { ["2M", "1G"] }
}

/// A file's owner as numeric UID:GID, e.g. 107:107.
struct Owner: ExpressibleByArgument, Equatable {
    var uid: UInt32
    var gid: UInt32
    static let root = Owner(uid: 0, gid: 0)
    init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
    init?(argument: String) {
        let ids = argument.split(separator: ":", omittingEmptySubsequences: false)
        guard ids.count == 2, let u = UInt32(ids[0]), let g = UInt32(ids[1]) else { return nil }
        self.init(uid: u, gid: g)
    }
    var defaultValueDescription: String { "\(uid):\(gid)" }
}

/// A file mode in octal, e.g. 600.
struct FileMode: ExpressibleByArgument, Equatable {
    var bits: UInt32
    init(bits: UInt32) { self.bits = bits }
    init?(argument: String) {
        guard let m = UInt32(argument, radix: 8), m & ~0o777 == 0 else { return nil }
        bits = m
    }
    var defaultValueDescription: String { String(bits, radix: 8) }
}

/// Host nodes: 0, 2,3 or 0-3.
struct NodeList: ExpressibleByArgument, Equatable {
    var nodes: [Int]
    init?(argument: String) {
        let list = ProcParsers.cpuList(argument)
        guard !list.isEmpty else { return nil }
        nodes = list
    }
}

/// Sizes separated by commas: 1G,2G,4G.
struct SizeList: ExpressibleByArgument, Equatable {
    var bytes: [UInt64]
    init?(argument: String) {
        let parts = argument.split(separator: ",").map { ByteSize.parse(String($0)) }
        guard !parts.isEmpty, !parts.contains(nil) else { return nil }
        bytes = parts.compactMap { $0 }
    }
}
