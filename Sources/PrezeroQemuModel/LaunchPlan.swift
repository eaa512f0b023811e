import PrezeroCore
import PrezeroProtocol

/// `prezero launch`: the memory regions asked for and the VMM arguments that name them.
public struct LaunchRegion: Equatable, Sendable {
    public var name: String
    public var bytes: UInt64
    /// Allowed host nodes; empty means any.
    public var nodes: [Int]
}

/// A bad `--memory` or VMM command line for `prezero launch`, in one line that names the fix.
public struct LaunchError: Error, Equatable, CustomStringConvertible {
    @OneLine public var description: String
}

/// `prezero launch`'s command line: reads `--memory`, checks it against the VMM's arguments,
/// and puts each file's path in place of its `{prezero:NAME}`.
public enum LaunchPlan {
    public static let placeholderPrefix = "{prezero:"

    /// `NAME=SIZE[@NODES]`, e.g. `m0=8G@0` or `ram=2G@2,3`.
    public static func parseRegion(_ text: String) throws(LaunchError) -> LaunchRegion {
        let kv = text.split(separator: "=", maxSplits: 1)
        guard kv.count == 2, !kv[0].isEmpty else {
            throw LaunchError(description: "--memory '\(text)' must be NAME=SIZE[@NODES], e.g. m0=8G or m0=8G@0")
        }
        let name = String(kv[0])
        guard name.count <= 32, name.unicodeScalars.allSatisfy({ ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "_" }) else {
            throw LaunchError(description: "--memory name '\(name)' may hold only letters, digits, - and _ (at most 32)")
        }
        let sn = kv[1].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = ByteSize.parse(String(sn[0])), bytes > 0 else {
            throw LaunchError(description: "--memory \(name): '\(sn[0])' is not a size; use e.g. 8G or 512M")
        }
        var nodes: [Int] = []
        if sn.count == 2 {
            nodes = ProcParsers.cpuList(String(sn[1]))
            guard !nodes.isEmpty else { throw LaunchError(description: "--memory \(name): '\(sn[1])' is not a node list; use e.g. 0, 2,3 or 0-3") }
        }
        return LaunchRegion(name: name, bytes: bytes, nodes: nodes)
    }

    /// The regions, checked together: unique names, whole pages, each one used by the command.
    public static func check(_ regions: [LaunchRegion], pageSize: UInt64, command: [String]) throws(LaunchError) {
        var seen = Set<String>()
        for r in regions {
            guard seen.insert(r.name).inserted else { throw LaunchError(description: "--memory \(r.name) is given twice") }
            guard r.bytes % pageSize == 0 else {
                throw LaunchError(description: "--memory \(r.name): \(ByteSize.format(r.bytes)) is not a whole number of \(ByteSize.format(pageSize)) pages")
            }
            guard command.contains(where: { $0.contains(placeholder(r.name)) }) else {
                throw LaunchError(description: "--memory \(r.name) is not used: put \(placeholder(r.name)) in the VMM's arguments where its file goes")
            }
        }
        for name in placeholders(in: command) where !seen.contains(name) {
            throw LaunchError(description: "\(placeholder(name)) in the VMM's arguments has no --memory \(name)=SIZE")
        }
    }

    /// `{prezero:NAME}`: what the VMM's arguments hold where region `name`'s file goes.
    public static func placeholder(_ name: String) -> String { placeholderPrefix + name + "}" }

    /// Names of every `{prezero:NAME}` in the arguments.
    static func placeholders(in command: [String]) -> [String] {
        var out: [String] = []
        for arg in command {
            var rest = arg[...]
            while let start = rest.firstRange(of: placeholderPrefix), let end = rest[start.upperBound...].firstIndex(of: "}") {
                out.append(String(rest[start.upperBound..<end]))
                rest = rest[rest.index(after: end)...]
            }
        }
        return out
    }

    /// The arguments with each `{prezero:NAME}` replaced by its path.
    public static func substitute(_ command: [String], paths: [String: String]) -> [String] {
        command.map { arg in
            paths.reduce(arg) { a, p in a.replacing(placeholder(p.key), with: p.value) }
        }
    }
}
