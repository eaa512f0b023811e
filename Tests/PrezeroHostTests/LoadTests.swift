import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization
import Testing

/// What the load test counts, from every thread.
private final class LoadCounters: Sendable {
    struct Counts {
        var ops = 0, misses = 0, failures: [String] = [], latencies: [Double] = []
        var idleCutOff = 0, idleCutOffMessages: Set<String> = [], slowRefused: [String] = [], aborted = 0
        var rss: [UInt64] = []
    }
    let counts = Mutex(Counts())
    let stop = Atomic<Bool>(false)
    var stopped: Bool { stop.load(ordering: .relaxed) }
}

/// Runs `body` on a new thread; the returned group is waited on to join them all.
private func spawn(_ group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
    group.enter()
    Thread { body(); group.leave() }.start()
}

extension HostTests {
    @Suite("load: the control server under many clients and abuse", .tags(.hugePages))
    struct Load: HostSuite {
        /// 32 clients claim and release over the socket for LOAD_SECONDS (10 in `make test`,
        /// 60 with `make load`) while 64 connections sit idle (the limit), slow writers send
        /// a request a byte a second and others hang up halfway through one.
        @Test("under load and abuse: 32 clients are all served beside 64 idle connections, slow writers and hang-ups; memory stays bounded; aborted requests change nothing")
        func loadAndAbuse() throws {
            let seconds = Double(ProcessInfo.processInfo.environment["LOAD_SECONDS"] ?? "") ?? 10
            // LOAD_ABUSE=0: the 32 clients alone, the baseline for their latency.
            let abuse = ProcessInfo.processInfo.environment["LOAD_ABUSE"] != "0"
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0\nrequest_timeout_ms: 3000", mountConfig: "target: 256M\nfile_size: 4M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(256 * MiB)
            let pid = try #require(pool.process?.pid)
            let socket = pool.socket
            let c = LoadCounters()
            let group = DispatchGroup()
            let mount = pool.mount
            let claimLine: @Sendable (String) -> [UInt8] = { lease in
                Wire.encode(Request.claim(ClaimRequest(bytes: 4 * MiB, dest: "\(mount)/\(lease)", lease: lease)))
            }

            // 64 idle connections (prezerod's limit): they send nothing; each one cut off or
            // timed out reads why, and comes back.
            for _ in 0..<(abuse ? 64 : 0) {
                spawn(group) {
                    while !c.stopped {
                        guard let conn = try? UnixConnection(connectingTo: socket, deadline: monotonicSeconds() + 1) else { sleepSeconds(0.05); continue }
                        try? conn.setTimeout(seconds: 1)
                        while !c.stopped {
                            guard let r = try? conn.readLine(max: 1 << 16) else { continue }   // a timeout: still idle
                            if case .line(let l) = r, case .error(let e)? = try? Wire.decode(Response.self, l) {
                                c.counts.withLock { $0.idleCutOff += 1; $0.idleCutOffMessages.insert("\(e.code.rawValue): \(e.message)") }
                            }
                            break
                        }
                    }
                }
            }
            // Slow writers: a whole claim, a byte a second; the request timeout ends each.
            for i in 0..<(abuse ? 4 : 0) {
                spawn(group) {
                    var n = 0
                    while !c.stopped {
                        n += 1
                        guard let conn = try? UnixConnection(connectingTo: socket, deadline: monotonicSeconds() + 1) else { continue }
                        try? conn.setTimeout(seconds: 1)
                        var answer: [UInt8]?
                        for b in claimLine("slow-\(i)-\(n)") where !c.stopped {
                            if (try? conn.writeAll([b])) == nil { break }
                            if case .line(let l)? = try? conn.readLine(max: 1 << 16) { answer = l; break }
                        }
                        if let answer, case .error(let e)? = try? Wire.decode(Response.self, answer) {
                            c.counts.withLock { $0.slowRefused.append(e.message) }
                        }
                    }
                }
            }
            // Hang-ups: half a claim, then close.
            for i in 0..<(abuse ? 4 : 0) {
                spawn(group) {
                    var n = 0
                    while !c.stopped {
                        n += 1
                        guard let conn = try? UnixConnection(connectingTo: socket, deadline: monotonicSeconds() + 1) else { continue }
                        let line = claimLine("aborted-\(i)-\(n)")
                        _ = try? conn.writeAll(Array(line[0..<(line.count / 2)]))
                        c.counts.withLock { $0.aborted += 1 }
                        sleepSeconds(0.01)
                    }
                }
            }
            sleepSeconds(2)   // the abusers hold every place before the clients start

            // 32 well-behaved clients: claim 2 or 4 MiB, check it, release; any error is a failure.
            let client = ControlClient(socket: socket, timeout: 20)
            let clients = DispatchGroup()
            for i in 0..<32 {
                spawn(clients) {
                    var n = 0
                    let end = monotonicSeconds() + seconds
                    while monotonicSeconds() < end {
                        n += 1
                        let lease = "client-\(i)-\(n)"
                        let bytes = UInt64(n % 2 + 1) * 2 * MiB
                        let t0 = monotonicSeconds()
                        do {
                            let r = try client.claim(ClaimRequest(bytes: bytes, dest: "\(mount)/\(lease)", lease: lease))
                            if r.outcome != .miss {
                                guard r.bytes == bytes else { throw ControlError(.system, "claimed \(r.bytes) bytes, asked \(bytes)") }
                                _ = try client.release(ReleaseRequest(lease: lease))
                            }
                            let dt = monotonicSeconds() - t0
                            c.counts.withLock { $0.ops += 1; $0.misses += r.outcome == .miss ? 1 : 0; $0.latencies.append(dt) }
                        } catch {
                            c.counts.withLock { $0.failures.append("\(lease): \(error)") }
                        }
                    }
                }
            }
            spawn(group) {
                while !c.stopped { c.counts.withLock { $0.rss.append(Self.rss(pid)) }; sleepSeconds(0.5) }
            }
            clients.wait()
            c.stop.store(true, ordering: .relaxed)
            #expect(group.wait(timeout: DispatchTime.now() + 30) == .success, "the abusers stopped")

            let k = c.counts.withLock { $0 }
            let lat = k.latencies.sorted()
            let p = { (q: Double) in lat.isEmpty ? 0 : lat[min(lat.count - 1, Int(Double(lat.count) * q))] * 1000 }
            let (first, last) = (k.rss.first ?? 0, k.rss.max() ?? 0)
            print(String(format: "load: %.0f s, 32 clients: %d claim+release (%d misses), %.0f/s, %.0f hits/s, 0 of them failed: %@; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d idle connections cut off, %d slow writers refused, %d hang-ups; prezerod RSS %.1f MiB at start, %.1f MiB peak",
                         seconds, k.ops, k.misses, Double(k.ops) / seconds, Double(k.ops - k.misses) / seconds,
                         k.failures.isEmpty ? "yes" : "NO (\(k.failures.count))", p(0.5), p(0.99), p(1), k.idleCutOff,
                         k.slowRefused.count, k.aborted, Double(first) / Double(MiB), Double(last) / Double(MiB)))
            #expect(k.failures.isEmpty, "a well-behaved client was not served: \(k.failures.prefix(5))")
            #expect(k.ops > 32, "the clients got through")
            // Cut off for a newcomer, refused, or let go at the request timeout: a clear line each time.
            #expect(!abuse || k.idleCutOffMessages.contains { $0.hasPrefix("too_many_connections: cut off") }, "idle connections give way: \(k.idleCutOffMessages)")
            #expect(k.idleCutOffMessages.allSatisfy { ($0.hasPrefix("too_many_connections: ") || $0.hasPrefix("bad_request: no complete request")) && !$0.contains("\n") },
                    "an idle connection let go reads a clear error: \(k.idleCutOffMessages)")
            #expect(!abuse || !k.slowRefused.isEmpty && k.slowRefused.allSatisfy { $0.contains("request_timeout_ms") || $0.hasPrefix("cut off") || $0.hasPrefix("prezerod is serving") },
                    "a slow writer is refused within the request timeout: \(Set(k.slowRefused))")
            #expect(last < first + 64 * MiB, "prezerod's RSS stays bounded: \(first) at start, \(last) peak")

            // Nothing from an aborted or refused request: no lease, nothing linked, the pool whole again.
            try pool.waitClean(256 * MiB)
            let st = try pool.status()
            #expect(st.leases.isEmpty, "\(st.leases)")
            let linked = try FileManager.default.contentsOfDirectory(atPath: pool.mount).filter { !$0.hasPrefix(".") }
            #expect(linked.isEmpty, "files linked by refused requests: \(linked)")
        }
    }
}

extension HostSuite {
    /// VmRSS of a process, in bytes.
    static func rss(_ pid: Int32) -> UInt64 {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let kb = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(separator: " ").dropFirst().first
        return (kb.flatMap { UInt64($0) } ?? 0) * 1024
    }
}
