import ArgumentParser
import Foundation
import PrezeroMetrics
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print prezerod's counters in the Prometheus text format (for node_exporter's textfile collector or a scrape wrapper).")

    @OptionGroup var connection: Connection

    func run() throws {
        try guarded {
            let s = try connection.status()
            print(PrometheusText.render(s), terminator: "")
        }
    }
}
