import ArgumentParser
import Foundation
import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

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
