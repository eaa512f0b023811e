import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    /// Each bad input gets a clear error, and nothing else happens: the pool
    /// directories, the mount and the free pages are the same before and after.
    @Suite("bad input to the real prezerod: refused, and nothing else happens", .tags(.hugePages))
    struct BadInput: HostSuite {
        @Test("garbage, truncated and oversized messages are refused")
        func garbageMessages() throws {
            let pool = try badInputPool()
            defer { pool.close() }
            for (bytes, code, text) in [
                (Array("{{{ not json\n".utf8), ControlError.Code.badRequest, "not a JSON object"),
                (Array("{\"op\":\"status\"}\n".utf8), .badRequest, "protocol version"),
                (Array("{\"v\":1,\"op\":\"claim\"}\n".utf8), .badRequest, "missing \"claim\""),
                (Array("{\"v\":1,\"op\":\"explode\"}\n".utf8), .badRequest, "malformed request"),
                (Array(repeating: UInt8(ascii: "x"), count: 10000) + [10], .tooLarge, "max_request_bytes"),
                (Array("{\"v\":1,\"op\":\"sta".utf8), .badRequest, "ended before its newline"),
            ] {
                try expectRefused(pool, code, text) {
                    let r = try pool.client.exchange(bytes)
                    if case .error(let e) = r { throw e }
                }
            }
        }

        @Test("destinations outside the allowed directories, through symlinks, or on top of a symlink are refused")
        func hostileDestinations() throws {
            let pool = try badInputPool(extra: "allowed_dirs: [\"{mount}/vms\", \"{base}/outside\"]")
            defer { pool.close() }
            let vms = pool.mount + "/vms"
            try expectRefused(pool, .badDestination, "outside the allowed directories") {
                try pool.client.send(claimRequest(pool, dest: pool.mount + "/elsewhere"))
            }
            try expectRefused(pool, .badDestination, "no '.', '..'") {
                try pool.client.send(claimRequest(pool, dest: vms + "/../escape"))
            }
            try expectRefused(pool, .badDestination, "inside a pool directory") {
                try pool.client.send(claimRequest(pool, dest: pool.mount + "/.prezero/clean/x"))
            }
            // Something planted at the destination is never replaced. (hugetlbfs refuses
            // symlinks outright, EINVAL, so a FIFO stands in for one on the mount.)
            #expect(mkfifo(vms + "/planted", 0o644) == 0)
            try expectRefused(pool, .badDestination, "already exists") {
                try pool.client.send(claimRequest(pool, dest: vms + "/planted"))
            }
            // A symlink on the way to the destination, in an allowed directory off the mount.
            try FileManager.default.createDirectory(atPath: pool.base + "/outside", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: pool.base + "/outside/link", withDestinationPath: vms)
            try expectRefused(pool, .badDestination, "symlink") {
                try pool.client.send(claimRequest(pool, dest: pool.base + "/outside/link/vm"))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: vms) == ["planted"])
            // An allowed directory on another filesystem: a hugetlbfs file cannot be linked there.
            try expectRefused(pool, .badDestination, "not on the pool mount") {
                try pool.client.send(claimRequest(pool, dest: pool.base + "/outside/vm"))
            }
            // A NUL cuts a path short at the kernel: vms/x\0y would be linked as vms/x.
            for dest in [vms + "/x\u{0}y", vms + "/x\u{1}"] {
                try expectRefused(pool, .badDestination, "control character") {
                    try pool.client.send(claimRequest(pool, dest: dest))
                }
            }
            try expectRefused(pool, .badDestination, "control character") {
                try pool.client.release(ReleaseRequest(dest: vms + "/planted\u{0}x"))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: vms) == ["planted"])
        }

        @Test("out-of-range sizes and nodes are refused before anything changes")
        func outOfRange() throws {
            let pool = try badInputPool()
            defer { pool.close() }
            try expectRefused(pool, .badRequest, "is not a node of this host") {
                try pool.client.makeRoom(MakeRoomRequest(pageSize: page2M, pages: ["0": 4, "7": 1]))
            }
            try expectRefused(pool, .badRequest, "cannot be made free") {
                try pool.client.makeRoom(MakeRoomRequest(pageSize: page2M, pages: ["0": 1 << 60]))
            }
            try expectRefused(pool, .badRequest, "more than any allowed node has") {
                try pool.client.claim(ClaimRequest(bytes: 1 << 62, dest: pool.mount + "/vms/huge"))
            }
            try expectRefused(pool, .badRequest, "not a positive multiple of the page size") {
                try pool.client.claim(ClaimRequest(bytes: 4096, dest: pool.mount + "/vms/tiny"))
            }
            try expectRefused(pool, .noPool, "no pool mount has 1 GiB pages") {
                try pool.client.claim(ClaimRequest(bytes: GiB, pageSize: GiB, dest: pool.mount + "/vms/g"))
            }
        }

        @Test("hostile lease keys are refused")
        func hostileLeaseKeys() throws {
            let pool = try badInputPool()
            defer { pool.close() }
            for key in ["../../etc/passwd", "a/b", "..", "", String(repeating: "k", count: 300), "ключ"] {
                try expectRefused(pool, .badRequest, "lease key") {
                    try pool.client.send(claimRequest(pool, dest: pool.mount + "/vms/x", lease: key))
                }
                try expectRefused(pool, .badRequest, "lease key") {
                    try pool.client.release(ReleaseRequest(lease: key))
                }
            }
        }

        @Test("files planted in a pool directory are quarantined, never handed out")
        func plantedInPool() throws {
            let pool = try badInputPool()
            defer { pool.close() }
            pool.stop()
            // hugetlbfs refuses symlinks (EINVAL); what can be planted is a FIFO, a directory
            // or a regular file, each under a name that looks like a clean pool file.
            let clean = "\(pool.mount)/.prezero/clean"
            #expect(mkfifo(clean + "/n0-8388608-999997", 0o600) == 0)
            try FileManager.default.createDirectory(atPath: clean + "/n0-8388608-999998", withIntermediateDirectories: false)
            let fd = open("\(pool.mount)/.prezero/filling/not-a-pool-file", O_CREAT | O_WRONLY, 0o600)
            #expect(fd >= 0)
            close(fd)
            try pool.start()
            #expect(try pool.status().quarantined == 3)
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/quarantine").count == 3)
            #expect(try FileManager.default.contentsOfDirectory(atPath: clean).count == 1, "only the real clean file is left")
            let c = try pool.claim(8 * MiB, as: "vms/a")
            #expect(c.outcome == .hit)
            #expect(try FileBytes.allZero(c.path))
        }

        @Test("a non-root peer is refused: by the socket's mode and group, and by SO_PEERCRED")
        func nonRootPeer() throws {
            // Default: the socket is root-only; nobody cannot even connect.
            let pool = try badInputPool()
            defer { pool.close() }
            let cli = try pool.copyCLI()
            let snap = pool.snapshot()
            let r = try run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", cli, "status", "--socket", pool.socket])
            #expect(r.status == 3)
            #expect(r.err.contains("permission denied"), "\(r.err)")
            #expect(pool.snapshot() == snap)

            // With another uid allowed the socket is its group's (never open to all): nobody outside
            // the group cannot connect, and in the group SO_PEERCRED turns it away.
            let open = try TestPool(config: "allowed_uids: [4242]\nsocket_group: \"+4243\"", mountConfig: "target: 0")
            defer { open.close() }
            try open.start()
            let cli2 = try open.copyCLI()
            for (groups, status, says) in [("--clear-groups", Int32(3), "permission denied"), ("--groups=4243", 1, "uid 65534 may not use prezerod")] {
                let r2 = try run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", groups, cli2,
                                  "claim", "--size", "2M", "--dest", open.mount + "/x", "--socket", open.socket])
                #expect(r2.status == status)
                #expect(r2.err.contains(says), "\(r2.err)")
            }
            #expect(!FileManager.default.fileExists(atPath: open.mount + "/x"))
        }
    }
}

extension HostSuite {
    /// A pool with an allowed directory `vms/` on its mount, filled with one clean file.
    func badInputPool(extra: String = "") throws -> TestPool {
        let pool = try TestPool(config: "min_free: 0\nmax_request_bytes: 4096\n" + extra,
                                mountConfig: "target: 8M\nfile_size: 8M")
        try FileManager.default.createDirectory(atPath: pool.mount + "/vms", withIntermediateDirectories: true)
        try pool.start()
        try pool.waitClean(8 * MiB)
        return pool
    }

    /// Runs `body`, which must fail with `code`, and checks that nothing changed.
    func expectRefused(_ pool: TestPool, _ code: ControlError.Code, _ contains: String,

                       _ body: () throws -> Void) throws {
        let snap = pool.snapshot(), free = freePages(page2M)
        do {
            try body()
            Issue.record("expected a \(code.rawValue) error")
        } catch let e as ControlError {
            #expect(e.code == code, "\(e.message)")
            #expect(e.message.contains(contains), "\(e.message)")
            #expect(!e.message.contains("\n"))
        }
        #expect(pool.snapshot() == snap, "a refused request changes nothing on disk")
        #expect(freePages(page2M) == free)
    }

    func claimRequest(_ pool: TestPool, dest: String, lease: String? = nil) -> Request {
        Request.claim(ClaimRequest(bytes: 8 * MiB, dest: dest, lease: lease))
    }
}
