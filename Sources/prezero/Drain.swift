import ArgumentParser
import Foundation
import Glibc
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

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
