@testable import PrezeroBench
import Testing

@Suite("prezero-bench's command line: options read by hand, every mistake a one-line error with exit status 2")
struct CommandTests {
    func refused(_ args: [String]) -> BenchError? {
        do {
            _ = try BenchCommand.run(args)
            return nil
        } catch {
            return error
        }
    }

    @Test("unknown benchmarks, unknown or repeated options, missing and bad values are refused before anything runs",
          arguments: [
              (["warp"], "unknown benchmark 'warp'"),
              (["pool", "--vms", "3"], "this benchmark takes no --vms"),
              (["storm", "--bogus"], "this benchmark takes no --bogus"),
              (["storm", "--runs"], "--runs needs a value"),
              (["storm", "--runs", "0"], "--runs 0: not a whole number of at least 1"),
              (["storm", "--size", "lots"], "--size lots: not a size"),
              (["pool", "--size=1G", "--size", "2G"], "--size is given twice"),
              (["pool", "8G"], "unexpected argument '8G'"),
              (["pool", "--only", "fill,warp"], "--only fill,warp: a comma-separated list of fill, recycle, handover, budget"),
          ])
    func refusedArguments(_ args: [String], _ says: String) {
        let e = refused(args)
        #expect(e?.code == 2, "\(args)")
        #expect(e?.description.contains(says) == true && e?.description.contains("\n") == false, "\(e?.description ?? "nothing refused")")
    }

    @Test("options take --name value and --name=value")
    func forms() throws {
        var o = try BenchCommand.Options(["--size=512M", "--runs", "3", "--json"], takes: ["size", "runs"])
        let (size, runs, json) = (try o.size("size"), try o.int("runs", min: 1), o.flag("json"))
        #expect(size == 512 << 20 && runs == 3 && json)
        try o.done()
    }
}
