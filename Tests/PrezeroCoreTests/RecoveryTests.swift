import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func listed(
    _ state: FileState, _ name: String, regular: Bool = true, links: UInt64 = 1, bytes: UInt64, held: Bool = false
) -> ListedFile {
    ListedFile(state: state, name: name, isRegular: regular, links: links, bytes: bytes, held: held)
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

    @Test(arguments: [(2 as UInt64, false), (1, true), (3, true)])
    func fillingLinkedOrHeldIsQuarantined(links: UInt64, held: Bool) {
        let a = only(listed(.filling, "n0-1073741824-3", links: links, bytes: GiB, held: held))
        #expect(isQuarantine(a))
        if case .quarantine(let s, let n, _) = a {
            #expect(s == .filling)
            #expect(n == "n0-1073741824-3")
        }
    }

    // MARK: scrubbing

    @Test func scrubbingGoesBackToDirty() {
        #expect(only(listed(.scrubbing, "n1-2147483648-8", bytes: 2 * GiB))
            == .move(from: .scrubbing, name: "n1-2147483648-8", to: .dirty, newName: "n1-2147483648-8"))
    }

    @Test func scrubbingCutShortIsRenamedToItsRealSize() {
        #expect(only(listed(.scrubbing, "n1-2147483648-8", bytes: 1 * GiB))
            == .move(from: .scrubbing, name: "n1-2147483648-8", to: .dirty, newName: "n1-1073741824-8"))
    }

    @Test func scrubbingHeldIsQuarantined() {
        #expect(isQuarantine(only(listed(.scrubbing, "n1-2147483648-8", bytes: 2 * GiB, held: true))))
        #expect(isQuarantine(only(listed(.scrubbing, "n1-2147483648-8", links: 2, bytes: 2 * GiB))))
    }

    // MARK: leased

    @Test func aReleasedLeaseGoesToDirtyWithoutItsKey() {
        let name = "\(uuidKey)~n0-4294967296-17"
        #expect(only(listed(.leased, name, links: 1, bytes: 4 * GiB, held: false))
            == .move(from: .leased, name: name, to: .dirty, newName: "n0-4294967296-17"))
    }

    @Test func aLeasedFileOfAnotherSizeThanItsNameGoesToDirtyUnderItsRealSize() {
        // A claim that crashed between the rename into leased/ and the truncate
        // (or the extension) leaves a file whose name is the claimed size.
        // Every other state is renamed to the real size (see scrubbing, clean,
        // dirty); leased should be too.
        let name = "k~n0-2147483648-17"
        #expect(only(listed(.leased, name, links: 1, bytes: 4 * GiB))
            == .move(from: .leased, name: name, to: .dirty, newName: "n0-4294967296-17"))
    }

    @Test(arguments: [(2 as UInt64, false), (3, false), (1, true), (2, true)])
    func anActiveLeaseIsKept(links: UInt64, held: Bool) {
        let name = "\(uuidKey)~n0-4294967296-17"
        #expect(only(listed(.leased, name, links: links, bytes: 4 * GiB, held: held)) == .keep(.leased, name))
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

    @Test(arguments: [(2 as UInt64, false), (1, true), (5, true)])
    func cleanLinkedOrHeldIsQuarantined(links: UInt64, held: Bool) {
        let a = only(listed(.clean, "n0-1073741824-4", links: links, bytes: GiB, held: held))
        #expect(isQuarantine(a))
        if case .quarantine(let s, let n, _) = a {
            #expect(s == .clean)
            #expect(n == "n0-1073741824-4")
        }
    }

    @Test func cleanOfAnotherSizeThanItsNameGoesToDirty() {
        #expect(only(listed(.clean, "n0-1073741824-4", bytes: 512 * MiB))
            == .move(from: .clean, name: "n0-1073741824-4", to: .dirty, newName: "n0-536870912-4"))
        #expect(only(listed(.clean, "n0-1073741824-4", bytes: 2 * GiB))
            == .move(from: .clean, name: "n0-1073741824-4", to: .dirty, newName: "n0-2147483648-4"))
    }

    @Test(arguments: ["n01-1073741824-4", "n+0-1073741824-4", "n0-01073741824-4", "n0-1073741824-04"])
    func aCleanFileWithANonCanonicalNameIsNotKeptClean(name: String) {
        // The pool refers to clean files by PoolFileName.description; a file kept
        // under another spelling of that name can never be found again by a claim.
        #expect(only(listed(.clean, name, bytes: GiB)) != .keep(.clean, name))
    }

    // MARK: dirty

    @Test func dirtyIsKept() {
        #expect(only(listed(.dirty, "n2-2097152-1", bytes: 2 * MiB)) == .keep(.dirty, "n2-2097152-1"))
    }

    @Test func dirtyOfAnotherSizeIsRenamedInPlace() {
        #expect(only(listed(.dirty, "n2-4194304-1", bytes: 2 * MiB))
            == .move(from: .dirty, name: "n2-4194304-1", to: .dirty, newName: "n2-2097152-1"))
    }

    @Test func dirtyHeldIsQuarantined() {
        #expect(isQuarantine(only(listed(.dirty, "n2-2097152-1", bytes: 2 * MiB, held: true))))
        #expect(isQuarantine(only(listed(.dirty, "n2-2097152-1", links: 2, bytes: 2 * MiB))))
    }

    // MARK: quarantine, unknown names, non-regular files

    @Test func quarantinedFilesStayPut() {
        #expect(only(listed(.quarantine, "whatever it was", bytes: 1)) == .keep(.quarantine, "whatever it was"))
        #expect(only(listed(.quarantine, "n0-1073741824-4", links: 3, bytes: GiB, held: true))
            == .keep(.quarantine, "n0-1073741824-4"))
    }

    @Test(arguments: [FileState.filling, .clean, .dirty, .scrubbing])
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
            listed(.dirty, "junk", bytes: 1),
        ]
        #expect(Recovery.plan(files) == [
            .keep(.clean, "n0-1073741824-4"),
            .resumeFill("n0-1073741824-5"),
            .quarantine(.dirty, "junk", reason: "not a pool file name"),
        ])
        #expect(Recovery.plan([]).isEmpty)
    }

    // MARK: the invariant

    /// Every combination of state, name shape, file type, link count, holder and
    /// size: recovery never moves anything into clean/, keeps in clean/ only an
    /// unexposed regular clean file whose size matches its name, and every action
    /// concerns the file it was made for.
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
                        for held in [false, true] {
                            for bytes: UInt64 in [0, 2 * MiB, 1 * GiB, 2 * GiB] {
                                files.append(listed(state, name, regular: regular, links: links, bytes: bytes, held: held))
                            }
                        }
                    }
                }
            }
        }
        let plan = Recovery.plan(files)
        #expect(plan.count == files.count)
        for (f, a) in zip(files, plan) {
            switch a {
            case .move(let from, let name, let to, let newName):
                #expect(to != .clean, "\(f) -> \(a)")
                #expect(from == f.state && name == f.name, "\(f) -> \(a)")
                #expect(f.isRegular && f.links <= 1 && !f.held, "\(f) -> \(a)")
                #expect(PoolFileName(newName) != nil, "\(f) -> \(a)")
            case .keep(let state, let name):
                #expect(state == f.state && name == f.name, "\(f) -> \(a)")
                if state == .clean {
                    let parsed = PoolFileName(f.name)
                    #expect(f.isRegular && f.links <= 1 && !f.held && parsed?.bytes == f.bytes, "\(f) -> \(a)")
                }
            case .resumeFill(let name):
                #expect(f.state == .filling && name == f.name, "\(f) -> \(a)")
                #expect(f.isRegular && f.links <= 1 && !f.held, "\(f) -> \(a)")
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
    @Test(arguments: [FileState.clean, .filling, .dirty, .scrubbing])
    func aPoolFileNotRootOnlyIsQuarantined(state: FileState) {
        let f = ListedFile(state: state, name: "n0-2097152-7", isRegular: true, links: 1, bytes: 2097152,
                           held: false, rootOnly: false)
        guard case .quarantine = Recovery.plan([f])[0] else {
            Issue.record("a \(state.rawValue) file owned by someone else must be quarantined")
            return
        }
    }

    @Test func aLeaseIsOwnedByItsGuestAndThatIsFine() {
        let f = ListedFile(state: .leased, name: "dom.ram-node0~n0-2097152-7", isRegular: true, links: 2,
                           bytes: 2097152, held: true, rootOnly: false)
        #expect(Recovery.plan([f]) == [.keep(.leased, "dom.ram-node0~n0-2097152-7")])
    }
}
