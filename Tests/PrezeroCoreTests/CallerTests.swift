import PrezeroProtocol
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private let tenant = Caller(pid: 42, uid: 1000, gid: 1000, groups: [1000, 36])
private let other = Caller(pid: 43, uid: 1001, gid: 1001)

/// The code of the ControlError `body` throws, or nil when it throws none.
private func refusal(_ body: () throws(ControlError) -> Void) -> ControlError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

@Suite("CallerPolicy: what a caller other than root may do")
struct CallerPolicyTests {
    @Test func admittedByUidOrByAnyOfItsGroups() {
        #expect(CallerPolicy.admitted(.root, allowedUids: [], allowedGids: []))
        #expect(!CallerPolicy.admitted(tenant, allowedUids: [], allowedGids: []))
        #expect(CallerPolicy.admitted(tenant, allowedUids: [1000], allowedGids: []))
        #expect(CallerPolicy.admitted(tenant, allowedUids: [], allowedGids: [1000]), "primary group")
        #expect(CallerPolicy.admitted(tenant, allowedUids: [], allowedGids: [36]), "supplementary group (SO_PEERGROUPS)")
        #expect(!CallerPolicy.admitted(other, allowedUids: [1000], allowedGids: [36]))
    }

    @Test(arguments: Operation.allCases)
    func rootMayDoEverything(op: Operation) {
        #expect(refusal { () throws(ControlError) in try CallerPolicy.check(op, by: .root) } == nil)
    }

    @Test(arguments: [Operation.hook, .fill, .drain, .makeRoom])
    func poolWideOperationsAreRoots(op: Operation) throws {
        let e = try #require(refusal { () throws(ControlError) in try CallerPolicy.check(op, by: tenant) })
        #expect(e.code == .forbidden)
        #expect(e.message.hasPrefix("\(op.rawValue) is root's alone ("), "\(e.message)")
        #expect(e.message.contains("uid 1000"))
        #expect(!e.message.contains("\n"))
    }

    @Test(arguments: [Operation.status, .claim, .release])
    func aTenantMayClaimReleaseAndAsk(op: Operation) {
        #expect(refusal { () throws(ControlError) in try CallerPolicy.check(op, by: tenant) } == nil)
    }

    @Test func theOwnerIsAlwaysTheCaller() throws {
        let asked = ClaimRequest(bytes: 2 * MiB, dest: "/h/vm", uid: 0, gid: 0, mode: 0o600)
        let done = try CallerPolicy.claim(asked, by: tenant)
        #expect(done.uid == 1000 && done.gid == 1000, "root:root asked, the caller's own given")
        var someone = asked
        someone.uid = 64055
        someone.gid = 64055
        #expect(try CallerPolicy.claim(someone, by: tenant).uid == 1000)
        #expect(try CallerPolicy.claim(someone, by: .root) == someone, "root hands files to anyone (the hook, to QEMU's user)")
    }

    @Test(arguments: [0o600 as UInt32, 0o400, 0o200, 0])
    func modesUpTo0600AreKept(mode: UInt32) throws {
        #expect(try CallerPolicy.claim(ClaimRequest(bytes: 2 * MiB, dest: "/h/vm", mode: mode), by: tenant).mode == mode)
    }

    @Test(arguments: [0o644 as UInt32, 0o660, 0o606, 0o700, 0o4600, 0o777])
    func modesBeyond0600AreRefused(mode: UInt32) throws {
        let e = try #require(refusal { () throws(ControlError) in
            _ = try CallerPolicy.claim(ClaimRequest(bytes: 2 * MiB, dest: "/h/vm", mode: mode), by: tenant)
        })
        #expect(e.code == .forbidden)
        #expect(e.message.contains("mode \(String(mode, radix: 8))") && e.message.contains("at most 600"), "\(e.message)")
        #expect(try CallerPolicy.claim(ClaimRequest(bytes: 2 * MiB, dest: "/h/vm", mode: mode), by: .root).mode == mode)
    }

    @Test func onlyTheClaimantOrRootReleases() throws {
        #expect(refusal { () throws(ControlError) in try CallerPolicy.checkRelease("k", claimant: 1000, by: tenant) } == nil)
        #expect(refusal { () throws(ControlError) in try CallerPolicy.checkRelease("k", claimant: 1000, by: .root) } == nil)
        let e = try #require(refusal { () throws(ControlError) in try CallerPolicy.checkRelease("k", claimant: 1000, by: other) })
        #expect(e.code == .forbidden && e.message.contains("lease 'k'") && e.message.contains("only its own"), "\(e.message)")
        #expect(refusal { () throws(ControlError) in try CallerPolicy.checkRelease("hook", claimant: 0, by: tenant) } != nil,
                "the hook's leases (root's) are not a tenant's to release")
    }

    @Test func quotaArithmetic() throws {
        func check(_ leased: UInt64, _ bytes: UInt64, _ quota: UInt64) -> ControlError? {
            refusal { () throws(ControlError) in try CallerPolicy.checkQuota(leased: leased, claim: bytes, quota: quota, uid: 1000) }
        }
        #expect(check(0, GiB, GiB) == nil, "exactly the quota fits")
        #expect(check(GiB - 2 * MiB, 2 * MiB, GiB) == nil)
        #expect(check(0, 0, 0) == nil)
        let e = try #require(check(GiB - 2 * MiB, 4 * MiB, GiB))
        #expect(e.code == .overQuota)
        #expect(e.message.contains("uid 1000 holds 1022 MiB") && e.message.contains("uid_quota of 1 GiB"), "\(e.message)")
        #expect(check(UInt64.max, 2 * MiB, UInt64.max) != nil, "a sum past 2^64 is over, not wrapped round")
        #expect(check(0, 2 * MiB, 0) != nil, "quota 0: no claims at all")
    }

    @Test func leasedBytesCountEveryLeaseOfTheClaimantUntilItsPagesAreBack() {
        var s = PoolState(config: Config(), mounts: [(2 * MiB, [0], MountConfig(path: "/h"))])
        func lease(_ key: String, _ bytes: UInt64, _ uid: UInt32, claiming: Bool = false) {
            s.leases[key] = Lease(key: key, mount: 0, file: PoolFileName(node: 0, bytes: bytes, seq: 1), dest: "/h/\(key)",
                                  inode: 1, claiming: claiming, claimant: uid)
        }
        lease("a", 64 * MiB, 1000)
        lease("b", 2 * MiB, 1000, claiming: true)
        lease("c", GiB, 1001)
        lease("d", GiB, 0)
        #expect(s.leasedBytes(claimant: 1000) == 66 * MiB)
        #expect(s.leasedBytes(claimant: 1001) == GiB)
        #expect(s.leasedBytes(claimant: 7) == 0)
    }

    @Test func aClaimRecordsItsClaimantInTheLeaseTicketAndJournal() throws {
        var s = PoolState(config: Config(), mounts: [(2 * MiB, [0], MountConfig(path: "/h"))])
        s.nodes[NodeKey(mount: 0, node: 0)]?.clean = [PoolFileName(node: 0, bytes: 4 * MiB, seq: 1)]
        let c = ClaimRequest(bytes: 4 * MiB, dest: "/h/vm", uid: 1000, gid: 1000, lease: "t")
        let (key, ticket) = try s.beginClaim(c, mount: 0, counters: [:], now: 0, claimant: 1000)
        let t = try #require(ticket)
        #expect(s.leases[key]?.claimant == 1000)
        #expect(PoolOp.claim(t).effects.contains(.journal(lease: "t", destination: "/h/vm", claimant: 1000)))
    }
}

@Suite("LeaseRecord: the lease journal's entries")
struct LeaseRecordTests {
    @Test func roundTrips() {
        for r in [LeaseRecord(dest: "/dev/hugepages/vms/a b", claimant: 1000), LeaseRecord(dest: "/x\"y\\z", claimant: 0),
                  LeaseRecord(dest: nil, claimant: 4242)] {
            #expect(LeaseRecord.parse(r.text) == r, "\(r.text)")
        }
        #expect(LeaseRecord(dest: "/h/vm", claimant: 1000).text == #"{"claimant":1000,"dest":"/h/vm"}"#)
    }

    @Test func anEntryFromBeforeTheClaimantWasKeptIsRoots() {
        #expect(LeaseRecord.parse("/dev/hugepages/libvirt/qemu/1-vm/pc.ram") == LeaseRecord(dest: "/dev/hugepages/libvirt/qemu/1-vm/pc.ram", claimant: 0))
    }

    @Test(arguments: ["", "{", #"{"dest":"/x"}"#, #"{"claimant":-1}"#, #"{"claimant":1.5}"#, #"{"claimant":4294967296}"#, "relative"])
    func aMangledEntryIsNothing(text: String) {
        #expect(LeaseRecord.parse(text) == nil)
    }

    @Test func recoveryGivesBackEachLeasesClaimant() {
        var s = PoolState(config: Config(), mounts: [(2 * MiB, [0], MountConfig(path: "/h"))])
        let listing = ["mine~n0-4194304-7", "old~n0-4194304-8", "lost~n0-4194304-9"].map {
            ListedFile(state: .leased, name: $0, isRegular: true, links: 2, bytes: 4 * MiB, rootOnly: false, inode: 9)
        }
        let journal = ["mine": LeaseRecord(dest: "/h/mine", claimant: 1000), "old": LeaseRecord.parse("/h/old")!]
        for op in s.recover(mount: 0, listing: listing, journal: { journal[$0] }) { s.commit(op, observed: nil, now: 0) }
        #expect(s.leases["mine"]?.claimant == 1000 && s.leases["mine"]?.dest == "/h/mine")
        #expect(s.leases["old"]?.claimant == 0 && s.leases["old"]?.dest == "/h/old")
        #expect(s.leases["lost"]?.claimant == 0 && s.leases["lost"]?.dest == nil, "no record: root's, as before")
    }
}
