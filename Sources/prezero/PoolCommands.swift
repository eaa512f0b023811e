import ArgumentParser
import Foundation
import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

/// Which part of the pool a fill or drain applies to.
struct ScopeOptions: ParsableArguments {
    @Option(name: .long, help: "Only this pool mount (default: all).")
    var mount: String?
    @Option(name: .long, help: "Only this node (default: all).")
    var node: Int?
}

struct Fill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set the pool target and wait while the workers fill it (progress bar on a terminal).")

    @OptionGroup var connection: Connection
    @OptionGroup var scope: ScopeOptions
    @Option(name: .long, help: "New target per (mount, node): a size (8G) or a share of the node's huge pages (50%). Default: as configured.")
    var target: String?
    @Flag(name: .long, help: "Return at once instead of waiting for the fill.")
    var noWait = false
    @Flag(name: .long, help: "Print the final status as JSON.")
    var json = false

    func run() throws {
        var spec: SizeSpec?
        if let target {
            guard let s = SizeSpec(target) else { throw ValidationError("--target '\(target)' is not a size or a percentage (e.g. 8G, 50%)") }
            spec = s
        }
        try guarded {
            var s = try connection.fill(PoolScope(mount: scope.mount, node: scope.node, target: spec))
            if !noWait {
                s = try Progress.follow(connection, scope: scope, label: "fill") { n in
                    (n.cleanBytes, n.targetBytes, n.fillingBytes == 0)
                }
            }
            if json { printJSON(s) } else { print(StatusTable.render(s)) }
        }
    }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give every pooled page back to the kernel and set the targets to 0 (leased files stay).")

    @OptionGroup var connection: Connection
    @OptionGroup var scope: ScopeOptions
    @Flag(name: .long, help: "Return at once instead of waiting for the pool to empty.")
    var noWait = false
    @Flag(name: .long, help: "Print the final status as JSON.")
    var json = false

    func run() throws {
        try guarded {
            let before = try connection.status()
            let start = Progress.select(before, scope: scope).reduce(0) { $0 + Progress.pooled($1) }
            var s = try connection.drain(PoolScope(mount: scope.mount, node: scope.node))
            if !noWait {
                s = try Progress.follow(connection, scope: scope, label: "drain") { n in
                    let left = Progress.pooled(n)
                    return (start - min(start, left), start, left == 0)
                }
            }
            if json { printJSON(s) } else { print(StatusTable.render(s)) }
        }
    }
}

/// Polls status until the selected nodes are done, drawing a bar on a terminal.
enum Progress {
    static func pooled(_ n: NodeStatus) -> UInt64 { n.cleanBytes + n.fillingBytes }

    static func select(_ s: StatusResult, scope: ScopeOptions) -> [NodeStatus] {
        s.mounts.filter { scope.mount == nil || $0.path == scope.mount }
            .flatMap(\.nodes).filter { scope.node == nil || $0.node == scope.node }
    }

    /// `measure` gives (done, goal, settled) per node. Stops when every node reached its
    /// goal, or nothing moved for 3 s while the node is settled (e.g. min_free reached).
    static func follow(_ c: Connection, scope: ScopeOptions, label: String,
                       measure: (NodeStatus) -> (UInt64, UInt64, Bool)) throws -> StatusResult {
        let tty = Streams.errorIsTerminal
        var last: UInt64 = .max
        var still = monotonicSeconds()
        let t0 = monotonicSeconds()
        while true {
            let s = try c.status()
            let m = select(s, scope: scope).map(measure)
            let done = m.reduce(0) { $0 + $1.0 }
            let goal = m.reduce(0) { $0 + $1.1 }
            let settled = m.allSatisfy(\.2)
            if tty {
                let frac = goal == 0 ? 1 : min(1, Double(done) / Double(goal))
                let bar = String(repeating: "#", count: Int(frac * 30)).padding(toLength: 30, withPad: ".", startingAt: 0)
                let rate = Double(done) / max(monotonicSeconds() - t0, 0.001)
                Streams.writeError("\r\(label) [\(bar)] \(ByteSize.format(done)) / \(ByteSize.format(goal))  \(ByteSize.format(UInt64(rate)))/s   ")
            }
            if done != last {
                last = done
                still = monotonicSeconds()
            }
            if (done >= goal && settled) || (settled && monotonicSeconds() - still > 3) {
                if tty { Streams.writeError("\n") }
                return s
            }
            sleepSeconds(0.2)
        }
    }
}
