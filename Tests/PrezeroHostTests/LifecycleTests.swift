import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    @Suite("lifecycle: holders, links, leases and prezerod refusing to run unsafely", .tags(.hugePages))
    struct Lifecycle: HostSuite {
        @Test("a released file stays leased while a process still maps it, then is taken back")
        func releaseWaitsForHolders() throws {
            let pool = try TestPool(config: "min_free: 0\nreclaim_interval_ms: 100", mountConfig: "target: 8M\nfile_size: 8M", mountOptions: "size=8M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(8 * MiB)
            let c = try pool.claim(8 * MiB, as: "vm", lease: "held")
            do {
                let (map, fd) = try FileBytes.map(c.path)
                Zeroing.fill(map.base, map.length, byte: 0x77)
                let r = try pool.release(lease: "held")
                #expect(!r.reclaimed, "a mapped file is not reclaimed")
                #expect(try Files.status(fd).uid == 0, "chowned back to root at once")
                sleepSeconds(0.5)
                #expect(try pool.node0().leasedBytes == 8 * MiB)
                #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").count == 1)
                map.unmap()
                sleepSeconds(0.4)
                #expect(try pool.node0().leasedBytes == 8 * MiB, "an open descriptor holds it too")
                withExtendedLifetime(fd) {}
            }
            // The descriptor is closed now: the file is taken back and a new one filled.
            try waitForRelease(pool)
        }

        @Test("make-room frees pages on the node before it returns and keeps fills out of them")
        func makeRoom() throws {
            let pool = try TestPool(config: "make_room_hold_s: 30", mountConfig: "target: 100%\nmin_free: 0\nfile_size: 16M")
            defer { pool.close() }
            try pool.start()
            try waitFor("the pool to take every free page") { try pool.node0().fillingBytes == 0 && freePages(page2M) == 0 }
            let r = try pool.client.makeRoom(MakeRoomRequest(pageSize: page2M, pages: ["0": 40]))
            #expect(r.freed["0"]! >= 40)
            #expect(freePages(page2M) >= 40, "free pages are there when make-room returns")
            sleepSeconds(1)
            #expect(freePages(page2M) >= 40, "the pool does not refill into pages held for a launch")
            // A launch takes them.
            let m = try Mapping(anonymousHugeBytes: 40 * Int(page2M), pageShift: 21)
            try m.populateWrite()
            m.unmap()
        }

        @Test("the CLI: claim and release with --json, status, metrics, doctor, and exit codes")
        func cli() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 8M\nfile_size: 4M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(8 * MiB)
            let cli = Binaries.prezero
            let claim = try run([cli, "claim", "--size", "4M", "--dest", pool.mount + "/vm", "--owner", "107:108",
                                 "--socket", pool.socket, "--json"])
            #expect(claim.status == 0, "\(claim.err)")
            let j = try JSONSerialization.jsonObject(with: Data(claim.out.utf8)) as! [String: Any]
            #expect(j["path"] as? String == pool.mount + "/vm")
            #expect(j["node"] as? Int == 0)
            #expect(j["bytes"] as? Int == 4 << 20)
            #expect(j["outcome"] as? String == "hit")
            let lease = try #require(j["lease"] as? String)
            let st = Files.status(followingPath: pool.mount + "/vm")!
            #expect(st.uid == 107 && st.gid == 108 && st.permissions == 0o600)

            let status = try run([cli, "status", "--json", "--socket", pool.socket])
            let s = try JSONDecoder().decode(StatusResult.self, from: Data(status.out.utf8))
            #expect(s.mounts[0].nodes[0].leasedBytes == 4 * MiB)
            // Accounting by VM: each lease with its bytes (the hugetlb cgroup charges them to prezerod).
            #expect(s.mounts[0].leases == [LeaseStatus(lease: lease, node: 0, bytes: 4 * MiB)])
            let table = try run([cli, "status", "--socket", pool.socket])
            #expect(table.out.contains("leased") && table.out.contains(pool.mount))
            #expect(table.out.contains(lease))

            let metrics = try run([cli, "metrics", "--socket", pool.socket])
            #expect(metrics.out.contains("# TYPE prezero_pool_clean_bytes gauge"))
            #expect(metrics.out.contains("prezero_claims_total{"))
            let leaseLine = metrics.out.split(separator: "\n").first { $0.hasPrefix("prezero_lease_bytes{") && $0.contains("lease=\"\(lease)\"") }
            #expect(leaseLine.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } == Double(4 * MiB), "\(metrics.out)")

            let rel = try run([cli, "release", "--lease", lease, "--socket", pool.socket, "--json"])
            #expect(rel.status == 0, "\(rel.err)")
            #expect(rel.out.contains("\"reclaimed\" : true"))
            let bad = try run([cli, "release", "--lease", lease, "--socket", pool.socket])
            #expect(bad.status == 1 && bad.err.contains("no lease"))

            let doctor = try run([cli, "doctor", "--socket", pool.socket])
            #expect(doctor.status == 0, "\(doctor.out)")
            let fill = try run([cli, "fill", "--target", "16M", "--socket", pool.socket, "--json"])
            #expect(fill.status == 0, "\(fill.err)")
            #expect(try pool.node0().cleanBytes == 16 * MiB)
            let drain = try run([cli, "drain", "--socket", pool.socket])
            #expect(drain.status == 0)
            #expect(try pool.node0().cleanBytes == 0)

            pool.stop()
            let down = try run([cli, "status", "--socket", pool.socket])
            #expect(down.status == 3)
            #expect(down.err.contains("prezerod is not running"))
            let usage = try run([cli, "claim", "--size", "lots", "--dest", "/x"])
            #expect(usage.status == 2, "usage errors exit 2, as documented")
            for sub in ["status", "claim", "release", "fill", "drain", "doctor", "metrics", "bench", "bench pool"] {
                let h = try run([cli] + sub.split(separator: " ").map(String.init) + ["--help"])
                #expect(h.status == 0 && h.out.contains("USAGE"), "\(sub) --help")
            }
            let d = try run([Binaries.prezerod, "--help"])
            #expect(d.status == 0 && d.out.contains("--config"))
        }

        @Test("prezerod refuses a bad config or a host without hugetlbfs, naming the fix")
        func daemonStartErrors() throws {
            let base = "/tmp/prezero-test-\(getpid())-cfg"
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: base) }
            try "tagret: 5G\n".write(toFile: base + "/bad.yaml", atomically: true, encoding: .utf8)
            let bad = try run([Binaries.prezerod, "--config", base + "/bad.yaml", "--check-config"])
            #expect(bad.status != 0 && bad.err.contains("unknown key 'tagret'"), "\(bad.err)")
            try "mounts:\n  - path: \(base)\n".write(toFile: base + "/notfs.yaml", atomically: true, encoding: .utf8)
            let notfs = try run([Binaries.prezerod, "--config", base + "/notfs.yaml", "--check-config"])
            #expect(notfs.status != 0 && notfs.err.contains("is not a hugetlbfs mount; mount one with"), "\(notfs.err)")
        }

        /// Without file leases the take-back could not tell a released file from one still in use.
        @Test("prezerod refuses to start with file leases switched off, and says how to switch them on")
        func refusesWithoutLeases() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 0")
            defer { pool.close() }
            let knob = "/proc/sys/fs/leases-enable"
            let was = try String(contentsOfFile: knob, encoding: .utf8)
            try "0\n".write(toFile: knob, atomically: false, encoding: .utf8)
            defer { try? was.write(toFile: knob, atomically: false, encoding: .utf8) }
            let r = try run([Binaries.prezerod, "--config", pool.configPath], timeout: 30)
            let line = r.err.split(separator: "\n").first { $0.contains("leases-enable is 0") } ?? ""
            #expect(r.status != 0 && line.contains("sysctl -w fs.leases-enable=1"), "one line that names the fix: \(r.err)")
        }

        /// The link race's end state: a tenant that made another name for its file before it
        /// became root's. The lease ends all the same, the file is taken back (its pages punched),
        /// the name is reported, and it leads to an empty root-only file, never to the next tenant's.
        @Test("a released file with a name outside the pool is taken back anyway, and the name reported")
        func outsideNameIsTakenBackAndReported() throws {
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0\nreclaim_interval_ms: 100",
                                    mountConfig: "target: 8M\nfile_size: 8M", mountOptions: "size=8M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(8 * MiB)
            let c = try pool.claim(8 * MiB, as: "vm", lease: "linked")
            let inode = Files.status(followingPath: c.path)!.inode
            try FileBytes.fill(c.path, byte: 0x42)
            try FileManager.default.createDirectory(atPath: pool.mount + "/kept", withIntermediateDirectories: false)
            let keep = pool.mount + "/kept/keep"
            #expect(link(c.path, keep) == 0, "a second name, as the tenant's linkat of /proc/self/fd/N makes")
            let r = try pool.release(lease: "linked")
            #expect(r.reclaimed, "an outside name keeps no lease alive: \(pool.log().suffix(1500))")
            try pool.expectRecycled(inode: inode, bytes: 8 * MiB)
            let st = try #require(Files.status(followingPath: keep))
            #expect(st.inode == inode && st.allocated == 0 && st.uid == 0 && st.permissions == 0o600,
                    "the kept name leads to the old inode, punched and root's: \(st)")
            let m = try pool.client.status().mounts[0]
            #expect(m.outsideNames == [OutsideNameStatus(lease: "linked", names: [keep], extraLinks: 1)])
            #expect(pool.log().contains("lease linked: its file had 1 name(s) outside the pool (\(keep))"))
            unlink(keep)
        }

        /// A tenant owns its leased file, so it may take a file lease on it itself. Every open of
        /// that file by prezerod would then sleep for the kernel's lease-break time (45 s here),
        /// holding the reclaim lock, other tenants' releases and the monitor with it. prezerod
        /// opens pool files non-blocking: the release answers at once (busy), and the file is
        /// taken back once the lease is gone.
        @Test("a tenant's own lease on its file stalls no release: busy at once, taken back once it lets go")
        func tenantLeaseStallsNothing() throws {
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0\nreclaim_interval_ms: 100",
                                    mountConfig: "target: 8M\nfile_size: 8M", mountOptions: "size=8M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(8 * MiB)
            let c = try pool.claim(8 * MiB, as: "vm", lease: "leased-by-tenant")
            let inode = Files.status(followingPath: c.path)!.inode
            // The lease holder is sent SIGIO when prezerod's open breaks its lease.
            Signals.ignoreLeaseBreaks()
            do {
                let dir = try Files.openDirectory(path: pool.mount)
                let fd = try Files.openFile(in: dir, name: "vm")
                try Files.takeWriteLease(fd)
                let t = monotonicSeconds()
                #expect(throws: (any Error).self) { try pool.release(lease: "leased-by-tenant") }
                let r = try run([Binaries.prezero, "release", "--lease", "leased-by-tenant", "--socket", pool.socket], timeout: 60)
                let took = monotonicSeconds() - t
                #expect(r.status != 0 && r.err.contains("try again"), "\(r.err)")
                #expect(took < 5, "both releases answered in \(took) s, not after the lease-break time")
                #expect(try pool.node0().leasedBytes == 8 * MiB, "still leased while the tenant holds its lease")
                Files.dropLease(fd)
                withExtendedLifetime(fd) {}
            }
            #expect(try pool.release(lease: "leased-by-tenant").reclaimed)
            try pool.expectRecycled(inode: inode, bytes: 8 * MiB, timeout: 30)
        }
    }
}

extension HostSuite {
    func waitForRelease(_ pool: TestPool) throws {
        try pool.waitClean(8 * MiB, timeout: 10)
        #expect(try pool.node0().leasedBytes == 0)
        let again = try pool.claim(8 * MiB, as: "vm2")
        #expect(try FileBytes.allZero(again.path))
    }
}

