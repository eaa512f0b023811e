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
