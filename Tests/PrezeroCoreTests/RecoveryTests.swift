import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func listed(_ state: FileState, _ name: String, regular: Bool = true, links: UInt64 = 1, bytes: UInt64) -> ListedFile {
    ListedFile(state: state, name: name, isRegular: regular, links: links, bytes: bytes)
}

private func only(_ f: ListedFile) -> RecoveryAction? {
    let plan = Recovery.plan([f])
    #expect(plan.count == 1)
    return plan.first
}

private func isQuarantine(_ a: RecoveryAction?) -> Bool {
    if case .quarantine = a { return true }
    return false
}

private let uuidKey = "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0"

@Suite("Recovery.plan")
struct RecoveryTests {
    // MARK: filling

    @Test func fillingResumes() {
        #expect(only(listed(.filling, "n0-1073741824-3", bytes: 256 * MiB)) == .resumeFill("n0-1073741824-3"))
    }

    @Test(arguments: [2 as UInt64, 3])
    func fillingLinkedElsewhereIsQuarantined(links: UInt64) {
        let a = only(listed(.filling, "n0-1073741824-3", links: links, bytes: GiB))
        #expect(isQuarantine(a))
        if case .quarantine(let s, let n, _) = a {
            #expect(s == .filling)
            #expect(n == "n0-1073741824-3")
        }
    }

    // MARK: leased

    /// Whether a lease has ended is the reclaimer's to decide, with the kernel's write lease:
    /// recovery keeps every leased file, released or not, whatever its size or links.
    @Test(arguments: [(1 as UInt64, 4 * GiB), (2 as UInt64, 4 * GiB), (3 as UInt64, 4 * GiB), (1 as UInt64, 2 * GiB), (0 as UInt64, 0 as UInt64)])
    func everyLeaseIsKeptForTheReclaimer(links: UInt64, bytes: UInt64) {
        let name = "\(uuidKey)~n0-4294967296-17"
        #expect(only(listed(.leased, name, links: links, bytes: bytes)) == .keep(.leased, name))
    }

    @Test(arguments: ["n0-4294967296-17", ".hidden~n0-1-2", "~n0-1-2", "a/b~n0-1-2", "key~junk", "key~", "a~b~n0-1-2"])
    func aLeasedFileWithoutALeaseNameIsQuarantined(name: String) {
        let a = only(listed(.leased, name, bytes: 4 * GiB))
        #expect(isQuarantine(a))
        if case .quarantine(let s, let n, let reason) = a {
            #expect(s == .leased)
            #expect(n == name)
            #expect(!reason.isEmpty)
        }
    }

    // MARK: clean

    @Test func cleanIsKept() {
        #expect(only(listed(.clean, "n0-1073741824-4", bytes: GiB)) == .keep(.clean, "n0-1073741824-4"))
    }

    @Test(arguments: [2 as UInt64, 5])
    func cleanLinkedElsewhereIsQuarantined(links: UInt64) {
        let a = only(listed(.clean, "n0-1073741824-4", links: links, bytes: GiB))
        #expect(isQuarantine(a))
        if case .quarantine(let s, let n, _) = a {
            #expect(s == .clean)
            #expect(n == "n0-1073741824-4")
        }
    }

    @Test func cleanOfAnotherSizeThanItsNameIsGivenBack() {
        #expect(only(listed(.clean, "n0-1073741824-4", bytes: 512 * MiB)) == .giveBack(.clean, "n0-1073741824-4"))
        #expect(only(listed(.clean, "n0-1073741824-4", bytes: 2 * GiB)) == .giveBack(.clean, "n0-1073741824-4"))
    }

    @Test(arguments: ["n01-1073741824-4", "n+0-1073741824-4", "n0-01073741824-4", "n0-1073741824-04"])
    func aCleanFileWithANonCanonicalNameIsNotKeptClean(name: String) {
        // The pool refers to clean files by PoolFileName.description; a file kept
        // under another spelling of that name can never be found again by a claim.
        #expect(only(listed(.clean, name, bytes: GiB)) != .keep(.clean, name))
    }

    // MARK: quarantine, unknown names, non-regular files

    @Test func quarantinedFilesStayPut() {
        #expect(only(listed(.quarantine, "whatever it was", bytes: 1)) == .keep(.quarantine, "whatever it was"))
        #expect(only(listed(.quarantine, "n0-1073741824-4", links: 3, bytes: GiB)) == .keep(.quarantine, "n0-1073741824-4"))
    }

    @Test(arguments: [FileState.filling, .clean])
    func unknownNamesAreQuarantined(state: FileState) {
        for name in ["core", "n0-1-2.tmp", "n0-1", "x0-1-2", "n4096-1-2", "n-1-1-2", "", ".n0-1-2", "k~n0-1-2"] {
            let a = only(listed(state, name, bytes: GiB))
            #expect(a == .quarantine(state, name, reason: "not a pool file name"), "\(state)/\(name)")
        }
    }

    @Test(arguments: FileState.allCases)
    func nonRegularFilesAreQuarantined(state: FileState) {
        let names = ["n0-1073741824-4", "\(uuidKey)~n0-1073741824-4", "evil-link"]
        for name in names {
            let a = only(listed(state, name, regular: false, links: 1, bytes: GiB))
            #expect(a == .quarantine(state, name, reason: "not a regular file"), "\(state)/\(name)")
        }
    }

    @Test func planKeepsOrderAndCount() {
        let files = [
            listed(.clean, "n0-1073741824-4", bytes: GiB),
            listed(.filling, "n0-1073741824-5", bytes: 0),
            listed(.clean, "junk", bytes: 1),
        ]
        #expect(Recovery.plan(files) == [
            .keep(.clean, "n0-1073741824-4"),
            .resumeFill("n0-1073741824-5"),
            .quarantine(.clean, "junk", reason: "not a pool file name"),
        ])
        #expect(Recovery.plan([]).isEmpty)
    }

    // MARK: the invariant

    /// Every combination of state, name shape, file type, link count and size: recovery
    /// never moves anything into clean/, keeps in clean/ only a regular file with one name
    /// whose size matches its name, and every action concerns the file it was made for.
    @Test func nothingIsEverMovedIntoClean() {
        let names = [
            "n0-1073741824-4", "n1-2097152-0", "n4095-1073741824-18446744073709551615",
            "\(uuidKey)~n0-1073741824-4", "claim-9~n1-2097152-0",
            "junk", "", ".", "..", "n0-1073741824", "n0-1073741824-4~", "~n0-1073741824-4",
            "../n0-1073741824-4", "n0-1073741824-4 ", "N0-1073741824-4",
        ]
        var files: [ListedFile] = []
        for state in FileState.allCases {
            for name in names {
                for regular in [true, false] {
                    for links: UInt64 in [0, 1, 2, 3] {
                        for bytes: UInt64 in [0, 2 * MiB, 1 * GiB, 2 * GiB] {
                            files.append(listed(state, name, regular: regular, links: links, bytes: bytes))
                        }
                    }
                }
            }
        }
        let plan = Recovery.plan(files)
        #expect(plan.count == files.count)
        for (f, a) in zip(files, plan) {
            switch a {
            case .keep(let state, let name):
                #expect(state == f.state && name == f.name, "\(f) -> \(a)")
                if state == .clean {
                    let parsed = PoolFileName(f.name)
                    #expect(f.isRegular && f.links <= 1 && parsed?.bytes == f.bytes, "\(f) -> \(a)")
                }
            case .resumeFill(let name):
                #expect(f.state == .filling && name == f.name, "\(f) -> \(a)")
                #expect(f.isRegular && f.links <= 1, "\(f) -> \(a)")
            case .giveBack(let state, let name):
                #expect(state == f.state && name == f.name, "\(f) -> \(a)")
            case .quarantine(let state, let name, let reason):
                #expect(state == f.state && name == f.name && !reason.isEmpty, "\(f) -> \(a)")
            }
            if !f.isRegular { #expect(isQuarantine(a), "\(f) -> \(a)") }
        }
    }
}

@Suite("TokenBucket")
struct TokenBucketTests {
    @Test func rateZeroNeverWaits() {
        var b = TokenBucket(rate: 0, burst: 0, now: 0)
        #expect(b.take(1e12, now: 0) == 0)
        #expect(b.take(1e12, now: 0) == 0)
        #expect(b.take(1, now: 5) == 0)
    }

    @Test func aFullBucketServesABurstWithoutWaiting() {
        var b = TokenBucket(rate: 100, burst: 1000, now: 10)
        #expect(b.take(1000, now: 10) == 0)
    }

    @Test func waitingGrowsWithBytes() {
        var small = TokenBucket(rate: 100, burst: 100, now: 0)
        var large = TokenBucket(rate: 100, burst: 100, now: 0)
        let ws = small.take(200, now: 0)
        let wl = large.take(500, now: 0)
        #expect(ws == 1.0)
        #expect(wl == 4.0)
        #expect(wl > ws)
    }

    @Test func debtAccumulates() {
        var b = TokenBucket(rate: 100, burst: 100, now: 0)
        #expect(b.take(100, now: 0) == 0)
        #expect(b.take(100, now: 0) == 1.0)
        #expect(b.take(100, now: 0) == 2.0)
    }

    @Test func tokensRefillOverTime() {
        var b = TokenBucket(rate: 100, burst: 100, now: 0)
        #expect(b.take(100, now: 0) == 0)
        // Half a second brings back 50 bytes.
        #expect(b.take(50, now: 0.5) == 0)
        #expect(b.take(50, now: 0.5) == 0.5)
        // Paying the debt off and a little more.
        #expect(b.take(25, now: 1.25) == 0)
    }

    @Test func refillIsCappedAtTheBurst() {
        var b = TokenBucket(rate: 100, burst: 100, now: 0)
        #expect(b.take(100, now: 0) == 0)
        // An hour idle refills only up to the burst.
        #expect(b.take(300, now: 3600) == 2.0)
    }

    @Test func steadyUseAtTheRateNeverWaits() {
        var b = TokenBucket(rate: 1000, burst: 1000, now: 0)
        for i in 1...100 {
            #expect(b.take(100, now: Double(i) * 0.1) == 0)
        }
    }

    @Test func theAverageRateIsHeld() {
        // Taking 10 MB in 1 MB pieces at 1 MB/s with a 1 MB burst: waiting adds up to 9 s.
        var b = TokenBucket(rate: 1e6, burst: 1e6, now: 0)
        var now = 0.0
        for _ in 0..<10 { now += b.take(1e6, now: now) }
        #expect(abs(now - 9) < 1e-9)
    }
}

@Suite("Recovery: ownership")
struct RecoveryOwnershipTests {
    @Test(arguments: [FileState.clean, .filling])
    func aPoolFileNotRootOnlyIsQuarantined(state: FileState) {
        let f = ListedFile(state: state, name: "n0-2097152-7", isRegular: true, links: 1, bytes: 2097152, rootOnly: false)
        guard case .quarantine = Recovery.plan([f])[0] else {
            Issue.record("a \(state.rawValue) file owned by someone else must be quarantined")
            return
        }
    }

    @Test func aLeaseIsOwnedByItsGuestAndThatIsFine() {
        let f = ListedFile(state: .leased, name: "dom.ram-node0~n0-2097152-7", isRegular: true, links: 2,
                           bytes: 2097152, rootOnly: false)
        #expect(Recovery.plan([f]) == [.keep(.leased, "dom.ram-node0~n0-2097152-7")])
    }
}
