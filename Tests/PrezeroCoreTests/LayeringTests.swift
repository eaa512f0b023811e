import Foundation
import Testing

/// The layers hold: PrezeroCore calls nothing on the host, and PrezeroPool and the
/// executables reach the kernel only through PrezeroSys. This reads the sources.
@Suite("layering: the imports and symbols each target may use")
struct LayeringTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The imports each target may have.
    static let imports: [String: Set<String>] = [
        // The standard library only: the static hook links it, and it must start in a millisecond.
        "PrezeroProtocol": [],
        // The pool model, the config's model and /proc's text: the standard library only, so that
        // the static prezero-bench links the pool with no Foundation or libxml2. No libvirt logic.
        "PrezeroCore": ["PrezeroProtocol"],
        // What QEMU and libvirt read and decide, on the standard library alone.
        "PrezeroQemuModel": ["PrezeroCore", "PrezeroProtocol"],
        // libvirt's side as pure logic: domain XML needs an XML parser.
        "PrezeroLibvirtModel": ["Foundation", "FoundationXML", "PrezeroCore", "PrezeroProtocol", "PrezeroQemuModel"],
        "PrezeroConfigYAML": ["Foundation", "PrezeroCore", "PrezeroProtocol", "Yams"],
        "PrezeroSys": ["Glibc", "PrezeroCShims", "CNuma", "Synchronization"],
        // The host's facts, read in one place below the daemon and the CLI.
        "PrezeroHost": ["PrezeroCore", "PrezeroProtocol", "PrezeroQemuModel", "PrezeroSys"],
        // Glibc for errno and signal names only: no call (see `syscalls`).
        "PrezeroPool": ["Dispatch", "Glibc", "Logging", "PrezeroCore", "PrezeroHost", "PrezeroProtocol", "PrezeroSys", "Synchronization"],
        "PrezeroClient": ["Glibc", "PrezeroCore", "PrezeroProtocol", "PrezeroQemuModel", "PrezeroSys"],
        "PrezeroMetrics": ["PrezeroCore", "PrezeroProtocol", "Prometheus"],
        // The daemon's side of libvirt's hook, handed to PoolDaemon by prezerod.
        "PrezeroHookHandler": ["Logging", "PrezeroCore", "PrezeroHost", "PrezeroLibvirtModel", "PrezeroPool", "PrezeroProtocol", "PrezeroQemuModel", "PrezeroSys"],
        // The pool and storm benches: linked into a static binary with no Foundation.
        // Glibc for exit() only.
        "PrezeroBench": ["Glibc", "Logging", "PrezeroClient", "PrezeroCore", "PrezeroHost", "PrezeroPool", "PrezeroProtocol", "PrezeroQemuModel",
                         "PrezeroSys", "Synchronization"],
        "prezero-bench": ["PrezeroBench"],
        // The private environment of the demo, the benches and the host tests: never in prezerod.
        "PrezeroLab": ["Foundation", "PrezeroClient", "PrezeroLibvirtModel", "PrezeroProtocol", "PrezeroQemuModel", "PrezeroSys"],
        // libvirt's C API is this target's C layer, as the C library is PrezeroSys's.
        "PrezeroLibvirt": ["CLibvirt", "Glibc"],
        "prezerod": ["ArgumentParser", "Glibc", "Logging", "PrezeroConfigYAML", "PrezeroCore", "PrezeroHookHandler",
                     "PrezeroHost", "PrezeroMetrics", "PrezeroPool", "PrezeroProtocol", "PrezeroSys", "ServiceLifecycle"],
        "prezero": ["ArgumentParser", "Foundation", "Glibc", "Logging", "PrezeroBench", "PrezeroClient", "PrezeroConfigYAML", "PrezeroCore",
                    "PrezeroHookHandler", "PrezeroHost", "PrezeroLab", "PrezeroLibvirt", "PrezeroLibvirtModel", "PrezeroMetrics",
                    "PrezeroProtocol", "PrezeroQemuModel", "PrezeroSys"],
        "prezero-hook": ["Glibc", "PrezeroProtocol", "PrezeroSys"],
    ]

    /// C library calls that belong in PrezeroSys only.
    static let syscalls = [
        "open", "openat", "close", "read", "write", "pread", "pwrite", "unlink", "unlinkat", "rename", "renameat", "link",
        "linkat", "mkdir", "rmdir", "fallocate", "ftruncate", "truncate", "mmap", "munmap", "madvise", "kill", "getpid",
        "getuid", "geteuid", "getgid", "isatty", "getenv", "setenv", "malloc", "calloc", "free", "chown", "fchown", "chmod",
        "fchmod", "stat", "fstat", "lstat", "fstatat", "socket", "bind", "listen", "accept", "connect", "mount", "umount2",
        "ioctl", "fork", "execve", "waitpid", "sysconf", "set_mempolicy", "mbind", "sched_setaffinity", "nanosleep",
        "usleep", "signal", "sigaction", "pthread_create", "dup2", "pipe", "poll", "epoll_create1", "epoll_ctl", "epoll_wait",
        "eventfd", "accept4", "fcntl",
    ]
    /// Foundation types that do file or process I/O.
    static let foundationIO = ["FileManager", "FileHandle", "Process()", "ProcessInfo"]

    /// The Swift sources of a target, without comments and string literals.
    static func sources(_ target: String) -> [(String, [String])] {
        let dir = root.appendingPathComponent("Sources/\(target)")
        guard let files = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        return files.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted().map { name in
            let text = (try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)) ?? ""
            var inBlock = false
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { raw -> String in
                var line = String(raw)
                if line.contains("\"\"\"") { inBlock.toggle(); return "" }
                if inBlock { return "" }
                line = line.replacingOccurrences(of: #""([^"\\]|\\.)*""#, with: "\"\"", options: .regularExpression)
                if let c = line.range(of: "//") { line = String(line[..<c.lowerBound]) }
                return line
            }
            return ("\(target)/\(name)", lines)
        }
    }

    static func problems(_ target: String) -> [String] {
        var out: [String] = []
        let allowed = imports[target] ?? []
        for (file, lines) in sources(target) {
            // The file's own function or enum case of the same name (called without `self.`) is not the C call.
            let declared = Set(lines.compactMap { line -> String? in
                guard let r = line.range(of: #"(func|case) [a-zA-Z_]+\("#, options: .regularExpression) else { return nil }
                return String(line[r].drop { $0 != " " }.dropFirst().dropLast())
            })
            let names = syscalls.filter { !declared.contains($0) }
            let call = try! NSRegularExpression(pattern: #"(?<![\w.])(\#(names.joined(separator: "|")))\("#)
            for (i, line) in lines.enumerated() {
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.hasPrefix("import ") {
                    let m = String(t.dropFirst(7)).trimmingCharacters(in: .whitespaces)
                    if !allowed.contains(m) { out.append("\(file):\(i + 1): import \(m) is not allowed in \(target)") }
                }
                guard target != "PrezeroSys", target != "PrezeroLibvirt" else { continue }
                let ns = line as NSString
                for m in call.matches(in: line, range: NSRange(location: 0, length: ns.length)) {
                    out.append("\(file):\(i + 1): \(ns.substring(with: m.range(at: 1)))() is called outside PrezeroSys")
                }
                for f in foundationIO where target != "PrezeroSys" && line.contains(f) {
                    out.append("\(file):\(i + 1): \(f) does I/O outside PrezeroSys")
                }
            }
        }
        return out
    }

    @Test("every target imports only what its layer allows, and no target but PrezeroSys calls the C library", arguments: imports.keys.sorted())
    func layer(_ target: String) {
        #expect(!Self.sources(target).isEmpty, "no sources found for \(target)")
        let p = Self.problems(target)
        #expect(p.isEmpty, "\(p.joined(separator: "\n"))")
    }
}
