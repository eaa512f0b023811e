import ArgumentParser
import Foundation
import PrezeroCore
import PrezeroProtocol

struct Claim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Claim a pre-zeroed file and link it at a destination path.",
        discussion: "Outcomes: hit (exact size), truncated (cut from a larger file), partial (extended at claim time), miss (nothing handed out; the daemon made room instead).")

    @OptionGroup var connection: Connection
    @Option(name: .long, help: "Size of the file, a multiple of the page size (e.g. 2G).")
    var size: Size
    @Option(name: .long, help: "Where to link the file: on the pool mount, inside an allowed directory, not existing yet.")
    var dest: String
    @Option(name: .long, help: "Allowed host node(s), e.g. 0 or 2,3; repeatable. Default: any node.")
    var node: [NodeList] = []
    @Option(name: .long, help: "Page size of the pool to claim from: 2M or 1G. Default: the first pool mount.")
    var pageSize: PageSize?
    @Option(name: .long, help: "Owner of the file as numeric UID:GID (root's choice: any other caller's file is always its own).")
    var owner: Owner = .root
    @Option(name: .long, help: "Mode of the file, octal, at most 777 (at most 600 for a caller other than root).")
    var mode = FileMode(bits: 0o600)
    @Option(name: .long, help: "Lease key (letters, digits, - _ . : @). Default: the daemon picks one.")
    var lease: String?
    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let req = ClaimRequest(bytes: size.bytes, pageSize: pageSize?.bytes, nodes: node.flatMap(\.nodes),
                               dest: dest, uid: owner.uid, gid: owner.gid, mode: mode.bits, lease: lease)
        try guarded {
            let r = try connection.claim(req)
            if json {
                printJSON(r)
            } else if r.outcome == .miss {
                print("miss: no clean file for \(ByteSize.format(r.bytes)); nothing was linked at \(dest) (room was made for a fresh allocation)")
            } else {
                print("\(r.outcome.rawValue): \(r.path) (\(ByteSize.format(r.bytes)), node \(r.node ?? -1), lease \(r.lease ?? ""))")
            }
        }
    }
}
