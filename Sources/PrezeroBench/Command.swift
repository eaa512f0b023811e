import Glibc
import PrezeroProtocol
import PrezeroSys

/// prezero-bench's command line, read by hand: ArgumentParser would link Foundation, and
/// this binary must run on a machine with nothing but a Linux kernel.
public enum BenchCommand {
    public static let usage = """
        usage: prezero-bench pool  [--size S] [--runs N] [--workers N] [--budget R]
                                   [--only PARTS] [--json]
               prezero-bench storm [--vms N] [--size S] [--runs N] [--page-size P]
                                   [--launch [--qemu BIN] [--prezero PATH]] [--json]

        Each benchmark runs beside its baseline, measured in the same run, on a
        temporary hugetlbfs mount with an in-process prezerod (root; free huge pages).

        pool: fill rate with 1 worker and with N per node, against one thread and N
        threads each fallocating its own file on the same node; recycle (release to
        clean) against a raw fallocate; hand-over populate at the largest size the
        free pages allow, for 2 MiB and 1 GiB pages, against a fresh file
        populated by one thread and by one per CPU (up to 16); the fill budget.
          --size S      2 MiB pages to fill (default 8G, capped by the free pages)
          --runs N      repetitions, median and range (default 5)
          --workers N   fill workers against 1 (default: the node's, at least 2)
          --budget R    fill_bandwidth of the budget check, bytes/s (default 1G)
          --only PARTS  some of fill,recycle,handover,budget (default all)

        storm: N claims at once over the control socket, as N hooks would, each
        file then populated as QEMU does, against N fresh files populated at once
        (stock prealloc); then N releases, and the time until the pool is whole.
          --vms N       VMs starting at once (default 32)
          --size S      each VM's memory (default 256M)
          --runs N      storms (default 3)
          --page-size P 2M (default) or 1G
          --launch      N QEMUs through prezero launch instead, each timed from its
                        spawn to QMP ready, against N QEMUs with prealloc=on on
                        fresh files (--qemu, default qemu-system-x86_64; --prezero,
                        default the prezero beside this binary)

        --json prints the results as JSON; otherwise progress goes to stderr.
        Exit status: 0 done, 1 the host cannot run it (the message says why),
        2 bad arguments.
        """

    /// Runs this process's command line and exits with its status.
    public static func main() -> Never {
        Glibc.exit(main(Array(CommandLine.arguments.dropFirst())))
    }

    /// Runs the command line `args` (without the program name); the exit status.
    public static func main(_ args: [String]) -> Int32 {
        do {
            return try run(args)
        } catch {
            Streams.writeError("prezero-bench: \(error.description)\n")
            return error.code
        }
    }

    static func run(_ args: [String]) throws(BenchError) -> Int32 {
        guard let sub = args.first, sub != "--help", sub != "-h", sub != "help" else {
            print(usage)
            return args.isEmpty ? 2 : 0
        }
        let known = ["pool": ["size", "runs", "workers", "budget", "only"], "storm": ["vms", "size", "runs", "page-size", "qemu", "prezero"]]
        var opts = try Options(Array(args.dropFirst()), takes: Set(known[sub] ?? []))
        if opts.help {
            print(usage)
            return 0
        }
        let json = opts.flag("json")
        let note: @Sendable (String) -> Void = { s in if !json { Streams.writeError(s + "\n") } }
        do {
            switch sub {
            case "pool":
                var o = PoolBench.Options()
                o.size = try opts.size("size") ?? o.size
                o.runs = try opts.int("runs", min: 1) ?? o.runs
                o.workers = try opts.int("workers", min: 1)
                o.budget = try opts.size("budget") ?? o.budget
                if let only = opts.string("only") {
                    let parts = only.split(separator: ",").map { PoolBench.Part(rawValue: String($0)) }
                    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
                        throw BenchError("--only \(only): a comma-separated list of fill, recycle, handover, budget", code: 2)
                    }
                    o.only = Set(parts.compactMap { $0 })
                }
                try opts.done()
                let r = try PoolBench(o, note: note).run()
                print(json ? try Wire.pretty(r) : PoolBench.text(r))
            case "storm":
                var o = StormBench.Options()
                o.vms = try opts.int("vms", min: 1) ?? o.vms
                o.size = try opts.size("size") ?? o.size
                o.runs = try opts.int("runs", min: 1) ?? o.runs
                o.pageSize = try opts.size("page-size") ?? o.pageSize
                o.launch = opts.flag("launch")
                o.qemu = opts.string("qemu") ?? o.qemu
                o.prezero = opts.string("prezero")
                try opts.done()
                let r = try StormBench(o, note: note).run()
                print(json ? try Wire.pretty(r) : StormBench.text(r))
            default:
                throw BenchError("unknown benchmark '\(sub)'; the benchmarks are pool and storm (prezero-bench --help)", code: 2)
            }
        } catch let e as BenchError {
            throw e
        } catch {
            throw BenchError("\(error)")
        }
        return 0
    }

    /// `--name value` and `--flag` arguments, each taken once.
    struct Options {
        var values: [String: String] = [:]
        var flags: Set<String> = []
        var help = false

        /// `takes`: the names that take a value; any other but --json and --help is refused.
        init(_ args: [String], takes: Set<String>) throws(BenchError) {
            var i = 0
            while i < args.count {
                let a = args[i]
                guard a.hasPrefix("--") else { throw BenchError("unexpected argument '\(a)' (prezero-bench --help)", code: 2) }
                var name = String(a.dropFirst(2))
                if name == "help" { help = true; i += 1; continue }
                if name == "json" || name == "launch" { flags.insert(name); i += 1; continue }
                var value: String
                if let eq = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                    guard takes.contains(name) else { throw BenchError("this benchmark takes no --\(name) (prezero-bench --help)", code: 2) }
                } else {
                    guard takes.contains(name) else { throw BenchError("this benchmark takes no --\(name) (prezero-bench --help)", code: 2) }
                    guard i + 1 < args.count else { throw BenchError("--\(name) needs a value (prezero-bench --help)", code: 2) }
                    i += 1
                    value = args[i]
                }
                guard values[name] == nil else { throw BenchError("--\(name) is given twice", code: 2) }
                values[name] = value
                i += 1
            }
        }

        mutating func flag(_ name: String) -> Bool { flags.remove(name) != nil }

        mutating func string(_ name: String) -> String? { values.removeValue(forKey: name) }

        mutating func size(_ name: String) throws(BenchError) -> UInt64? {
            guard let v = values.removeValue(forKey: name) else { return nil }
            guard let b = ByteSize.parse(v), b > 0 else { throw BenchError("--\(name) \(v): not a size (such as 512M, 8G)", code: 2) }
            return b
        }

        mutating func int(_ name: String, min: Int) throws(BenchError) -> Int? {
            guard let v = values.removeValue(forKey: name) else { return nil }
            guard let n = Int(v), n >= min else { throw BenchError("--\(name) \(v): not a whole number of at least \(min)", code: 2) }
            return n
        }

        /// Every option was one this benchmark takes.
        func done() throws(BenchError) {
            if let name = (values.keys.sorted() + flags.sorted()).first {
                throw BenchError("this benchmark takes no --\(name) (prezero-bench --help)", code: 2)
            }
        }
    }
}
