import ArgumentParser
struct Bench: ParsableCommand { static let configuration = CommandConfiguration(abstract: "x"); func run() throws {} }
