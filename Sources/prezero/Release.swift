import ArgumentParser
import Foundation
import PrezeroCore
import PrezeroProtocol

struct Release: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Release a claimed file: it is unlinked from its destination, and taken back (its pages to the kernel) once nothing has it open.")

    @OptionGroup var connection: Connection
    @Option(name: .long, help: "The destination path the file was claimed at.")
    var dest: String?
    @Option(name: .long, help: "The lease key the claim returned.")
    var lease: String?
    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (dest == nil) != (lease == nil) else { throw ValidationError("give exactly one of --dest or --lease") }
    }

    func run() throws {
        try guarded {
            let r = try connection.release(ReleaseRequest(lease: lease, dest: dest))
            if json {
                printJSON(r)
            } else {
                print(r.reclaimed ? "released \(r.lease): taken back, its pages returned to the kernel"
                                  : "released \(r.lease): still open or mapped somewhere; it will be taken back once that ends")
            }
        }
    }
}
