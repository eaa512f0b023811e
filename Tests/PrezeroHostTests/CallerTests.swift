import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    /// Callers other than root, through the real socket: each request is sent from a thread
    /// that is wholly the tenant's uid (so SO_PEERCRED and SO_PEERGROUPS see the tenant), to a
    /// prezerod that admits two tenants and puts its socket in their group.
    @Suite("tenants: callers other than root", .tags(.hugePages))
    struct Tenants: HostSuite {
        @Test("tenants: the socket is 0660 in socket_group, never open to all; SO_PEERCRED and SO_PEERGROUPS admit")
        func tenantSocket() throws {
            let pool = try callerPool(extra: "allowed_gids: [4250]")
            defer { pool.close() }
            let st = try #require(Files.status(followingPath: pool.socket))
            #expect(st.permissions == 0o660 && st.uid == 0 && st.gid == Self.socketGid, "mode \(String(st.permissions, radix: 8)) \(st.uid):\(st.gid)")
            // An allowed uid outside the group cannot even connect.
            _ = refusal(try asTenant(pool, Self.tenantA, inGroup: false) { c throws(ControlError) in try c.status() }, .unreachable, "permission denied")
            // In the group but not allowed: SO_PEERCRED turns it away.
            _ = refusal(try asTenant(pool, 4249) { c throws(ControlError) in try c.status() }, .forbidden, "uid 4249 may not use prezerod")
            // Allowed by a supplementary group (SO_PEERGROUPS).
            let member = try ThreadIdentity.onThreadAs(uid: 4249, gid: 4249, groups: [Self.socketGid, 4250]) { [client = pool.client] in
                Result { () throws(ControlError) in try client.status() }
            }
            #expect((try? member.get()) != nil, "\(member)")
            // Other callers with no socket_group: refused before anything starts.
            let conf = pool.base + "/open.yaml"
            try "allowed_uids: [\(Self.tenantA)]\nmounts:\n  - path: \(pool.mount)\n".write(toFile: conf, atomically: true, encoding: .utf8)
            let r = try run([Binaries.prezerod, "--config", conf, "--check-config"])
            #expect(r.status != 0 && r.err.contains("socket_group is not set"), "\(r.err)")
            #expect(r.err.split(separator: "\n").count == 1, "one line: \(r.err)")
        }

        @Test("tenants: the file is always the caller's, at most 0600")
        func tenantOwnerAndMode() throws {
            let pool = try callerPool()
            defer { pool.close() }
            let dest = pool.mount + "/a/vm"
            let got = try asTenant(pool, Self.tenantA) { c throws(ControlError) in
                try c.claim(ClaimRequest(bytes: 4 * MiB, dest: dest, uid: 0, gid: 0, mode: 0o600, lease: "a1"))
            }.get()
            #expect(got.outcome == .hit)
            let st = try #require(Files.status(followingPath: dest))
            #expect(st.uid == Self.tenantA && st.gid == Self.tenantA && st.permissions == 0o600, "root:root was asked; the caller's own is given")
            let snap = pool.snapshot()
            let loose = pool.mount + "/a/loose"
            for mode: UInt32 in [0o644, 0o660, 0o4600] {
                _ = refusal(try asTenant(pool, Self.tenantA) { c throws(ControlError) in
                    try c.claim(ClaimRequest(bytes: 4 * MiB, dest: loose, mode: mode))
                }, .forbidden, "at most 600")
            }
            #expect(pool.snapshot() == snap, "a refused claim changes nothing")
        }

        @Test("tenants: a claim only where the caller may write: root's 0700 directory, another user's, a read-only one are refused")
        func tenantDestinations() throws {
            let pool = try callerPool()
            defer { pool.close() }
            func dir(_ name: String, _ uid: UInt32, _ mode: mode_t) throws -> String {
                let d = pool.mount + "/" + name
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: false)
                #expect(chown(d, uid, uid) == 0 && chmod(d, mode) == 0)
                return d
            }
            let rootOnly = try dir("root-only", 0, 0o700)
            let domain = try dir("domain-of-b", Self.tenantB, 0o700)  // as libvirt's per-domain directory
            let readOnly = try dir("read-only", 0, 0o755)
            let inner = try dir("root-only/inner", Self.tenantA, 0o777)  // open to all, behind root's 0700
            let snap = pool.snapshot(), free = freePages(page2M)
            // The link is refused in the directory itself; the walk to it is refused on the way.
            for (dest, says) in [(rootOnly + "/vm", "may not create"), (domain + "/vm", "may not create"),
                                 (readOnly + "/vm", "may not create"), (inner + "/vm", "may not reach it")] {
                _ = refusal(try asTenant(pool, Self.tenantA) { c throws(ControlError) in
                    try c.claim(ClaimRequest(bytes: 4 * MiB, dest: dest, lease: "x"))
                }, .forbidden, says)
                #expect(!FileManager.default.fileExists(atPath: dest))
            }
            #expect(pool.snapshot() == snap, "the file taken for the refused link went back to clean/ under its name")
            #expect(freePages(page2M) == free)
            #expect(try pool.status().leases.isEmpty)
            // The same directories are root's to use (the hook links into libvirt's 0700 directories).
            #expect(try pool.client.claim(ClaimRequest(bytes: 4 * MiB, dest: domain + "/vm", uid: Self.tenantB, gid: Self.tenantB, lease: "r")).outcome == .hit)
            // Tenant B reaches its own 0700 directory.
            _ = try pool.client.release(ReleaseRequest(lease: "r"))
            let b = try asTenant(pool, Self.tenantB) { c throws(ControlError) in
                try c.claim(ClaimRequest(bytes: 4 * MiB, dest: domain + "/vm2", lease: "b"))
            }
            #expect((try? b.get())?.outcome == .hit, "\(b)")
        }

        @Test("tenants: a lease is released by its claimant or root only, across a restart too")
        func tenantRelease() throws {
            let pool = try callerPool()
            defer { pool.close() }
            let dest = pool.mount + "/a/vm"
            _ = try asTenant(pool, Self.tenantA) { c throws(ControlError) in try c.claim(ClaimRequest(bytes: 4 * MiB, dest: dest, lease: "a1")) }.get()
            let journal = try String(contentsOfFile: pool.base + "/state/leases/a1", encoding: .utf8)
            #expect(journal == #"{"claimant":\#(Self.tenantA),"dest":"\#(dest)"}"#, "\(journal)")
            func othersTry() throws {
                _ = refusal(try asTenant(pool, Self.tenantB) { c throws(ControlError) in try c.release(ReleaseRequest(lease: "a1")) },
                            .forbidden, "only its own leases")
                _ = refusal(try asTenant(pool, Self.tenantB) { c throws(ControlError) in try c.release(ReleaseRequest(dest: dest)) },
                            .forbidden, "only its own leases")
                #expect(FileManager.default.fileExists(atPath: dest))
                #expect(try pool.status().leases.map(\.lease) == ["a1"])
            }
            try othersTry()
            pool.crash()
            try pool.start()
            try othersTry()
            let mine = try asTenant(pool, Self.tenantA) { c throws(ControlError) in try c.release(ReleaseRequest(dest: dest)) }
            #expect((try? mine.get())?.reclaimed == true, "\(mine)")
            #expect(!FileManager.default.fileExists(atPath: dest), "the name is removed, as the caller")
            // Root may release any lease.
            let bDest = pool.mount + "/b/vm"
            _ = try asTenant(pool, Self.tenantB) { c throws(ControlError) in try c.claim(ClaimRequest(bytes: 4 * MiB, dest: bDest, lease: "b1")) }.get()
            #expect(try pool.release(lease: "b1").reclaimed)
        }

        @Test("tenants: the names a taken-back file had outside the pool (paths in its tenant's directories) are shown to that tenant and root, never to another")
        func tenantOutsideNames() throws {
            let pool = try callerPool()
            defer { pool.close() }
            let dest = pool.mount + "/a/vm"
            _ = try asTenant(pool, Self.tenantA) { c throws(ControlError) in try c.claim(ClaimRequest(bytes: 4 * MiB, dest: dest, lease: "a1")) }.get()
            // A second name for its file, in its own directory, made as the tenant (hard links
            // to files one does not own are refused by fs.protected_hardlinks).
            let secret = pool.mount + "/a/secret-name"
            try ThreadIdentity.asUser(uid: Self.tenantA, gid: Self.tenantA, groups: []) { () throws(SysError) in
                guard link(dest, secret) == 0 else { throw SysError("link", secret) }
            }
            defer { unlink(secret) }
            _ = try asTenant(pool, Self.tenantA) { c throws(ControlError) in try c.release(ReleaseRequest(lease: "a1")) }.get()
            try waitFor("the take-back") { try pool.status().leases.isEmpty }
            func names(_ uid: UInt32?) throws -> [String] {
                let s = try uid.map { u in try asTenant(pool, u) { c throws(ControlError) in try c.status() }.get() } ?? pool.client.status()
                return s.mounts.flatMap(\.outsideNames).flatMap(\.names)
            }
            #expect(try names(nil) == [secret], "root sees the name")
            #expect(try names(Self.tenantA) == [secret], "its tenant sees it")
            #expect(try names(Self.tenantB).isEmpty, "another tenant does not")
        }

        @Test("tenants: hook, fill, drain and make-room are refused, and change nothing")
        func tenantPoolWide() throws {
            let pool = try callerPool()
            defer { pool.close() }
            let snap = pool.snapshot(), free = freePages(page2M)
            let xml = "<domain type='kvm' id='1'><name>x</name><uuid>3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b</uuid></domain>"
            let asks: [(String, @Sendable (ControlClient) throws(ControlError) -> Response)] = [
                ("drain", { c throws(ControlError) in try c.send(.drain(PoolScope())) }),
                ("fill", { c throws(ControlError) in try c.send(.fill(PoolScope(target: .bytes(0)))) }),
                ("make-room", { c throws(ControlError) in try c.send(.makeRoom(MakeRoomRequest(pageSize: page2M, pages: ["0": 8]))) }),
                ("hook", { c throws(ControlError) in try c.send(.hook(HookRequest(args: ["x", "stopped", "end", "-"], stdin: xml))) }),
            ]
            for (op, ask) in asks {
                let e = refusal(try asTenant(pool, Self.tenantA, ask), .forbidden, "\(op) is root's alone")
                #expect(e?.message.contains("uid \(Self.tenantA)") == true)
            }
            sleepSeconds(0.5)
            #expect(pool.snapshot() == snap && freePages(page2M) == free, "nothing was drained, filled or given back")
            #expect(try pool.node0().targetBytes == 16 * MiB)
        }

        @Test("tenants: uid_quota bounds the bytes a uid holds in leases; others and root are not counted against it")
        func tenantQuota() throws {
            let pool = try callerPool()
            defer { pool.close() }
            func claim(_ uid: UInt32, _ dir: String, _ lease: String, _ bytes: UInt64 = 4 * MiB) throws -> Result<ClaimResult, ControlError> {
                let dest = pool.mount + "/\(dir)/\(lease)"
                return try asTenant(pool, uid) { c throws(ControlError) in try c.claim(ClaimRequest(bytes: bytes, dest: dest, lease: lease)) }
            }
            #expect(try claim(Self.tenantA, "a", "a1").get().outcome == .hit)
            #expect(try claim(Self.tenantA, "a", "a2").get().outcome == .hit, "8 MiB: exactly the quota")
            let snap = pool.snapshot()
            _ = refusal(try claim(Self.tenantA, "a", "a3", 2 * MiB), .overQuota, "uid_quota of 8 MiB")
            #expect(pool.snapshot() == snap)
            #expect(try claim(Self.tenantB, "b", "b1").get().outcome == .hit, "another uid has its own quota")
            // Checked before the pool is looked at: a claim that would miss (and make room) is refused the same.
            _ = refusal(try claim(Self.tenantB, "b", "b2", 6 * MiB), .overQuota, "uid 4244 holds 4 MiB")
            #expect(try pool.client.claim(ClaimRequest(bytes: 4 * MiB, dest: pool.mount + "/root-vm", lease: "r1")).outcome == .hit, "root has no quota")
            _ = try asTenant(pool, Self.tenantA) { c throws(ControlError) in try c.release(ReleaseRequest(lease: "a1")) }.get()
            try waitFor("lease a1 to be reclaimed") { try !pool.status().leases.map(\.lease).contains("a1") }
            // The pool whole again first: a claim made while it refills may miss, and a miss holds no lease.
            try pool.waitClean(16 * MiB)
            let a3 = try? claim(Self.tenantA, "a", "a3", 2 * MiB).get()
            #expect(a3 != nil && a3?.outcome != .miss, "room in the quota again once a1's pages are back: \(String(describing: a3))")
            _ = refusal(try claim(Self.tenantA, "a", "a4", 4 * MiB), .overQuota, "uid 4242 holds 6 MiB")
        }
    }
}

extension HostSuite {
    static var tenantA: UInt32 { 4242 }
    static var tenantB: UInt32 { 4244 }
    static var socketGid: UInt32 { 4243 }

    /// A pool of 4 files of 4 MiB that admits tenants A and B, with a quota of 8 MiB each, and
    /// a directory of each tenant's own on the mount.
    func callerPool(extra: String = "") throws -> TestPool {
        let pool = try TestPool(config: """
            min_free: 0
            reclaim_interval_ms: 100
            refill_delay_ms: 0
            allowed_uids: [\(Self.tenantA), \(Self.tenantB)]
            socket_group: "+\(Self.socketGid)"
            uid_quota: 8M
            \(extra)
            """, mountConfig: "target: 16M\nfile_size: 4M")
        for (dir, uid) in [("a", Self.tenantA), ("b", Self.tenantB)] {
            try FileManager.default.createDirectory(atPath: pool.mount + "/" + dir, withIntermediateDirectories: false)
            #expect(chown(pool.mount + "/" + dir, uid, uid) == 0 && chmod(pool.mount + "/" + dir, 0o755) == 0)
        }
        try pool.start()
        try pool.waitClean(16 * MiB)
        return pool
    }

    /// One exchange with prezerod as `uid` (its own gid, and the socket's group unless `inGroup` is false).
    func asTenant<T: Sendable>(_ pool: TestPool, _ uid: UInt32, inGroup: Bool = true,

                               _ body: @escaping @Sendable (ControlClient) throws(ControlError) -> T) throws -> Result<T, ControlError> {
        let client = pool.client
        return try ThreadIdentity.onThreadAs(uid: uid, gid: uid, groups: inGroup ? [Self.socketGid] : []) {
            Result { () throws(ControlError) in try body(client) }
        }
    }

    /// The refusal a tenant's request got; a test failure when it was not refused.
    func refusal<T>(_ r: Result<T, ControlError>, _ code: ControlError.Code, _ contains: String,

                    sourceLocation: SourceLocation = #_sourceLocation) -> ControlError? {
        switch r {
        case .success(let v):
            Issue.record("expected \(code.rawValue), got \(v)", sourceLocation: sourceLocation)
            return nil
        case .failure(let e):
            #expect(e.code == code, "\(e.message)", sourceLocation: sourceLocation)
            #expect(e.message.contains(contains), "\(e.message)", sourceLocation: sourceLocation)
            #expect(!e.message.contains("\n"), sourceLocation: sourceLocation)
            return e
        }
    }
}
