import PrezeroProtocol
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30
private let page2M: UInt64 = 2 * MiB

@Suite("FillPlanner.next")
struct FillPlannerTests {
    /// A roomy node: lots free, nothing kept, 2 MiB pages, 1 GiB default files.
    private func next(
        target: UInt64 = 64 * GiB, held: UInt64 = 0, cleanSizes: [UInt64] = [], learned: [UInt64] = [],
        fileSize: UInt64 = 1 * GiB, freeBytes: UInt64 = 128 * GiB, keepFree: UInt64 = 0, pageSize: UInt64 = page2M
    ) -> UInt64? {
        FillPlanner.next(target: target, held: held, cleanSizes: cleanSizes, learned: learned,
                         fileSize: fileSize, freeBytes: freeBytes, keepFree: keepFree, pageSize: pageSize)
    }

    @Test func defaultFileSizeWhenNothingIsLearned() {
        #expect(next() == 1 * GiB)
    }

    @Test func targetReachedIsNil() {
        #expect(next(target: 8 * GiB, held: 8 * GiB) == nil)
        #expect(next(target: 8 * GiB, held: 9 * GiB) == nil)
        #expect(next(target: 0, held: 0) == nil)
    }

    @Test func roomIsCappedByWhatIsLeftOfTheTarget() {
        #expect(next(target: 8 * GiB, held: 7 * GiB + 512 * MiB) == 512 * MiB)
    }

    @Test func roomIsCappedByFreeMinusKeepFree() {
        #expect(next(freeBytes: 3 * GiB, keepFree: 2 * GiB + 512 * MiB) == 512 * MiB)
        #expect(next(freeBytes: 3 * GiB, keepFree: 1 * GiB) == 1 * GiB)
    }

    @Test func nothingFreeBeyondKeepFreeIsNil() {
        #expect(next(freeBytes: 2 * GiB, keepFree: 2 * GiB) == nil)
        #expect(next(freeBytes: 1 * GiB, keepFree: 2 * GiB) == nil)
        #expect(next(freeBytes: 0, keepFree: 0) == nil)
    }

    @Test func roomIsRoundedDownToWholePages() {
        // 5 MiB of room holds two 2 MiB pages.
        #expect(next(freeBytes: 5 * MiB, keepFree: 0) == 4 * MiB)
        #expect(next(target: 5 * MiB, held: 0) == 4 * MiB)
        // Less than a page of room: nothing to do.
        #expect(next(freeBytes: 1 * MiB, keepFree: 0) == nil)
        #expect(next(target: 9 * MiB, held: 8 * MiB) == nil)
        #expect(next(freeBytes: 1 * GiB, keepFree: 0, pageSize: 1 * GiB) == 1 * GiB)
        #expect(next(freeBytes: 1 * GiB - 1, keepFree: 0, pageSize: 1 * GiB) == nil)
    }

    @Test func defaultFileSizeIsRoundedUpToAPage() {
        #expect(next(fileSize: 3 * MiB) == 4 * MiB)
        #expect(next(fileSize: 1, pageSize: 1 * GiB) == 1 * GiB)
    }

    @Test func learnedShapeComesFirst() {
        #expect(next(learned: [4 * GiB]) == 4 * GiB)
        #expect(next(learned: [512 * MiB], fileSize: 1 * GiB) == 512 * MiB)
    }

    @Test func learnedShapesAreTriedMostRecentFirst() {
        #expect(next(learned: [2 * GiB, 6 * GiB, 4 * GiB]) == 2 * GiB)
        #expect(next(learned: [6 * GiB, 2 * GiB]) == 6 * GiB)
    }

    @Test func aLearnedShapeThatAlreadyHasACleanFileIsSkipped() {
        #expect(next(cleanSizes: [4 * GiB], learned: [4 * GiB, 3 * GiB]) == 3 * GiB)
        #expect(next(cleanSizes: [4 * GiB, 3 * GiB], learned: [4 * GiB, 3 * GiB]) == 1 * GiB)
    }

    @Test func aLearnedShapeThatDoesNotFitIsSkipped() {
        // 4 GiB of room: 8 GiB does not fit, 2 GiB does.
        #expect(next(learned: [8 * GiB, 2 * GiB], freeBytes: 4 * GiB) == 2 * GiB)
        // None fit: the default size, capped by the room.
        #expect(next(learned: [8 * GiB, 16 * GiB], freeBytes: 4 * GiB) == 1 * GiB)
        #expect(next(learned: [8 * GiB], fileSize: 16 * GiB, freeBytes: 4 * GiB) == 4 * GiB)
    }

    @Test func aLearnedShapeIsRoundedUpToAPage() {
        #expect(next(learned: [3 * MiB]) == 4 * MiB)
    }

    @Test func resultIsAlwaysWholePagesWithinRoom() {
        let sizes: [UInt64] = [0, 1, 2 * MiB, 3 * MiB, 64 * MiB, 1 * GiB, 5 * GiB]
        for target in sizes {
            for held in sizes {
                for free in sizes {
                    for keep in [0, 2 * MiB, 1 * GiB] as [UInt64] {
                        for learned in [[], [3 * MiB], [64 * MiB, 2 * MiB]] as [[UInt64]] {
                            let r = next(target: target, held: held, learned: learned, fileSize: 1 * GiB,
                                         freeBytes: free, keepFree: keep)
                            guard let r else {
                                // nil only when there is less than a page of room.
                                let room = held >= target || free <= keep ? 0 : min(target - held, free - keep)
                                #expect(room < page2M, "t=\(target) h=\(held) f=\(free) k=\(keep)")
                                continue
                            }
                            #expect(r > 0)
                            #expect(r % page2M == 0)
                            #expect(held + r <= target)
                            #expect(r + keep <= free)
                        }
                    }
                }
            }
        }
    }
}

@Suite("YieldPlanner.plan")
struct YieldPlannerTests {
    private func f(_ bytes: UInt64, seq: UInt64, node: Int = 0) -> PoolFileName {
        PoolFileName(node: node, bytes: bytes, seq: seq)
    }

    @Test func nothingNeededIsNoSteps() {
        #expect(YieldPlanner.plan(needBytes: 0, clean: [f(1 * GiB, seq: 1)], pageSize: page2M).isEmpty)
    }

    @Test func nothingToGiveIsNoSteps() {
        #expect(YieldPlanner.plan(needBytes: 1 * GiB, clean: [], pageSize: page2M).isEmpty)
    }

    @Test func smallestFilesGoFirstWhole() {
        let clean = [f(4 * GiB, seq: 1), f(1 * GiB, seq: 2), f(2 * GiB, seq: 3)]
        let steps = YieldPlanner.plan(needBytes: 3 * GiB, clean: clean, pageSize: page2M)
        #expect(steps == [
            .init(file: f(1 * GiB, seq: 2), keepBytes: 0),
            .init(file: f(2 * GiB, seq: 3), keepBytes: 0),
        ])
    }

    @Test func theLastFileIsCutOnlyAsFarAsNeeded() {
        let clean = [f(4 * GiB, seq: 1), f(1 * GiB, seq: 2)]
        let steps = YieldPlanner.plan(needBytes: 2 * GiB, clean: clean, pageSize: page2M)
        #expect(steps == [
            .init(file: f(1 * GiB, seq: 2), keepBytes: 0),
            .init(file: f(4 * GiB, seq: 1), keepBytes: 3 * GiB),
        ])
    }

    @Test func needIsRoundedUpToWholePages() {
        let steps = YieldPlanner.plan(needBytes: 1, clean: [f(1 * GiB, seq: 1)], pageSize: page2M)
        #expect(steps == [.init(file: f(1 * GiB, seq: 1), keepBytes: 1 * GiB - 2 * MiB)])
        let steps2 = YieldPlanner.plan(needBytes: 3 * MiB, clean: [f(1 * GiB, seq: 1)], pageSize: page2M)
        #expect(steps2 == [.init(file: f(1 * GiB, seq: 1), keepBytes: 1 * GiB - 4 * MiB)])
    }

    @Test func needingMoreThanEverythingRemovesEverything() {
        let clean = [f(2 * GiB, seq: 1), f(1 * GiB, seq: 2)]
        let steps = YieldPlanner.plan(needBytes: 100 * GiB, clean: clean, pageSize: page2M)
        #expect(steps == [
            .init(file: f(1 * GiB, seq: 2), keepBytes: 0),
            .init(file: f(2 * GiB, seq: 1), keepBytes: 0),
        ])
    }

    @Test func anExactFitRemovesWholeFilesAndCutsNothing() {
        let clean = [f(2 * GiB, seq: 1), f(1 * GiB, seq: 2), f(8 * GiB, seq: 3)]
        let steps = YieldPlanner.plan(needBytes: 3 * GiB, clean: clean, pageSize: page2M)
        #expect(steps.map(\.keepBytes) == [0, 0])
        #expect(!steps.contains { $0.file.seq == 3 })
    }

    @Test func equalSizesGoOldestFirst() {
        let clean = [f(1 * GiB, seq: 5), f(1 * GiB, seq: 2), f(1 * GiB, seq: 9)]
        for p in permutations(clean) {
            let steps = YieldPlanner.plan(needBytes: 1 * GiB + 2 * MiB, clean: p, pageSize: page2M)
            #expect(steps == [
                .init(file: f(1 * GiB, seq: 2), keepBytes: 0),
                .init(file: f(1 * GiB, seq: 5), keepBytes: 1 * GiB - 2 * MiB),
            ])
        }
    }

    @Test func plansFreeExactlyWhatIsNeededWhenTheyCan() {
        let clean = [f(6 * MiB, seq: 1), f(2 * MiB, seq: 2), f(10 * MiB, seq: 3), f(4 * MiB, seq: 4)]
        let total: UInt64 = 22 * MiB
        for need in stride(from: UInt64(0), through: 30 * MiB, by: Int(MiB)) {
            let steps = YieldPlanner.plan(needBytes: need, clean: clean, pageSize: page2M)
            let freed = steps.reduce(UInt64(0)) { $0 + ($1.file.bytes - $1.keepBytes) }
            let want = ByteSize.roundUp(need, to: page2M)
            #expect(freed == min(want, total), "need \(need)")
            // Only the last step may keep anything, and what it keeps is whole pages.
            for s in steps.dropLast() { #expect(s.keepBytes == 0) }
            if let last = steps.last {
                #expect(last.keepBytes < last.file.bytes)
                #expect(last.keepBytes % page2M == 0)
            }
            // Smallest first.
            #expect(steps.map(\.file.bytes) == steps.map(\.file.bytes).sorted())
            #expect(Set(steps.map(\.file)).count == steps.count)
        }
    }
}

@Suite("WorkChunk")
struct WorkChunkTests {
    let ps: UInt64 = 2 << 20

    @Test func unlimitedKeepsTheConfiguredChunkInWholePages() {
        #expect(WorkChunk.bytes(configured: 1 << 30, budget: 0, pageSize: ps) == 1 << 30)
        #expect(WorkChunk.bytes(configured: (1 << 30) + 5, budget: 0, pageSize: ps) == 1 << 30)
        #expect(WorkChunk.bytes(configured: 1, budget: 0, pageSize: ps) == ps)
    }

    @Test func aBudgetCapsTheChunkAtATwentiethOfASecond() {
        #expect(WorkChunk.bytes(configured: 1 << 30, budget: 200 << 20, pageSize: ps) == 10 << 20)
        #expect(WorkChunk.bytes(configured: 4 << 20, budget: 200 << 20, pageSize: ps) == 4 << 20)
        #expect(WorkChunk.bytes(configured: 1 << 30, budget: 1 << 20, pageSize: ps) == ps, "never less than a page")
        #expect(WorkChunk.bytes(configured: 1 << 30, budget: 1 << 30, pageSize: 1 << 30) == 1 << 30)
    }
}
