import PrezeroProtocol
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

private func file(_ node: Int, _ bytes: UInt64, seq: UInt64) -> CleanFile {
    CleanFile(PoolFileName(node: node, bytes: bytes, seq: seq))
}

/// Every ordering of `xs` (small inputs only).
func permutations<T>(_ xs: [T]) -> [[T]] {
    guard xs.count > 1 else { return [xs] }
    var out: [[T]] = []
    for i in xs.indices {
        var rest = xs
        let head = rest.remove(at: i)
        for p in permutations(rest) { out.append([head] + p) }
    }
    return out
}

@Suite("ClaimPolicy.choose")
struct ClaimPolicyTests {
    @Test func exactHit() {
        let pool = [file(0, 2 * GiB, seq: 1), file(0, 4 * GiB, seq: 2), file(0, 8 * GiB, seq: 3)]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: pool)
        #expect(c.outcome == .hit)
        #expect(c.file == file(0, 4 * GiB, seq: 2))
    }

    @Test func exactHitIsPreferredOverLargerAndSmaller() {
        let pool = [file(0, 1 * GiB, seq: 1), file(0, 3 * GiB, seq: 2), file(0, 2 * GiB, seq: 3)]
        let c = ClaimPolicy.choose(bytes: 2 * GiB, allowedNodes: [], from: pool)
        #expect(c == ClaimChoice(outcome: .hit, file: file(0, 2 * GiB, seq: 3)))
    }

    @Test func truncatedPicksTheSmallestLargerFile() {
        let pool = [
            file(0, 16 * GiB, seq: 1), file(0, 6 * GiB, seq: 2), file(0, 8 * GiB, seq: 3),
            file(0, 2 * GiB, seq: 4), file(0, 3 * GiB, seq: 5),
        ]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: pool)
        #expect(c.outcome == .truncated)
        #expect(c.file == file(0, 6 * GiB, seq: 2))
    }

    @Test func truncatedIsPreferredOverPartial() {
        let pool = [file(0, 3 * GiB + 512 * MiB, seq: 1), file(0, 64 * GiB, seq: 2)]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: pool)
        #expect(c == ClaimChoice(outcome: .truncated, file: file(0, 64 * GiB, seq: 2)))
    }

    @Test func partialPicksTheLargestSmallerFile() {
        let pool = [file(0, 1 * GiB, seq: 1), file(0, 3 * GiB, seq: 2), file(0, 2 * GiB, seq: 3)]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: pool)
        #expect(c.outcome == .partial)
        #expect(c.file == file(0, 3 * GiB, seq: 2))
    }

    @Test func partialNeverPicksAnEmptyFile() {
        let pool = [file(0, 0, seq: 1), file(1, 0, seq: 2)]
        let c = ClaimPolicy.choose(bytes: 2 * MiB, allowedNodes: [], from: pool)
        #expect(c == ClaimChoice(outcome: .miss, file: nil))
    }

    @Test func missWhenThereIsNothing() {
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: [])
        #expect(c.outcome == .miss)
        #expect(c.file == nil)
        let d = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [0, 1], from: [])
        #expect(d == ClaimChoice(outcome: .miss, file: nil))
    }

    @Test func aFileOnADisallowedNodeIsNeverChosenEvenForAnExactHit() {
        let pool = [file(1, 4 * GiB, seq: 1), file(0, 8 * GiB, seq: 2)]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [0], from: pool)
        #expect(c == ClaimChoice(outcome: .truncated, file: file(0, 8 * GiB, seq: 2)))
    }

    @Test func onlyDisallowedFilesIsAMiss() {
        let pool = [file(1, 4 * GiB, seq: 1), file(1, 8 * GiB, seq: 2), file(1, 2 * GiB, seq: 3)]
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [0], from: pool)
        #expect(c == ClaimChoice(outcome: .miss, file: nil))
    }

    @Test func anEmptyNodeSetAllowsEveryNode() {
        let pool = [file(5, 4 * GiB, seq: 9)]
        #expect(ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: pool)
            == ClaimChoice(outcome: .hit, file: file(5, 4 * GiB, seq: 9)))
        #expect(ClaimPolicy.choose(bytes: 2 * GiB, allowedNodes: [], from: pool)
            == ClaimChoice(outcome: .truncated, file: file(5, 4 * GiB, seq: 9)))
        #expect(ClaimPolicy.choose(bytes: 8 * GiB, allowedNodes: [], from: pool)
            == ClaimChoice(outcome: .partial, file: file(5, 4 * GiB, seq: 9)))
    }

    @Test func aNodeSetPicksOnlyFromItsNodes() throws {
        var pool: [CleanFile] = []
        var seq: UInt64 = 0
        for node in 0..<5 {
            for gib: UInt64 in [1, 2, 4, 8] {
                seq += 1
                pool.append(file(node, gib * GiB, seq: seq))
            }
        }
        let allowed: Set<Int> = [2, 3]
        let onlyAllowed = pool.filter { allowed.contains($0.node) }
        for request: UInt64 in [512 * MiB, 1 * GiB, 3 * GiB, 4 * GiB, 6 * GiB, 8 * GiB, 32 * GiB] {
            let c = ClaimPolicy.choose(bytes: request, allowedNodes: allowed, from: pool)
            let f = try #require(c.file, "request \(request)")
            #expect(allowed.contains(f.node), "request \(request) chose node \(f.node)")
            // The same answer as if only the allowed nodes' files existed.
            #expect(c == ClaimPolicy.choose(bytes: request, allowedNodes: [], from: onlyAllowed))
        }
        // Ties among allowed nodes go to the lowest allowed node.
        let c = ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: allowed, from: pool)
        #expect(c.outcome == .hit)
        #expect(c.file?.node == 2)
    }

    @Test func aNodeSetNamingAbsentNodesIsAMiss() {
        let pool = [file(0, 4 * GiB, seq: 1), file(1, 4 * GiB, seq: 2)]
        #expect(ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [7, 9], from: pool).outcome == .miss)
    }

    @Test func exactTiesGoToTheLowestNodeThenTheOldestFile() {
        let pool = [file(1, 4 * GiB, seq: 1), file(0, 4 * GiB, seq: 7), file(0, 4 * GiB, seq: 3), file(2, 4 * GiB, seq: 0)]
        for p in permutations(pool) {
            #expect(ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: p)
                == ClaimChoice(outcome: .hit, file: file(0, 4 * GiB, seq: 3)))
        }
    }

    @Test func truncatedTiesGoToTheSmallestSizeThenLowestNodeThenOldest() {
        let pool = [
            file(0, 8 * GiB, seq: 1),  // larger: loses to any 6 GiB file despite the lowest node
            file(2, 6 * GiB, seq: 2),
            file(1, 6 * GiB, seq: 9),
            file(1, 6 * GiB, seq: 4),
        ]
        for p in permutations(pool) {
            #expect(ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: p)
                == ClaimChoice(outcome: .truncated, file: file(1, 6 * GiB, seq: 4)))
        }
    }

    @Test func partialTiesGoToTheLargestSizeThenLowestNodeThenOldest() {
        let pool = [
            file(0, 1 * GiB, seq: 1),  // smaller: loses to any 3 GiB file despite the lowest node
            file(2, 3 * GiB, seq: 2),
            file(1, 3 * GiB, seq: 9),
            file(1, 3 * GiB, seq: 4),
        ]
        for p in permutations(pool) {
            #expect(ClaimPolicy.choose(bytes: 4 * GiB, allowedNodes: [], from: p)
                == ClaimChoice(outcome: .partial, file: file(1, 3 * GiB, seq: 4)))
        }
    }

    /// The policy against a brute-force statement of it, over a grid of pools and requests.
    @Test(arguments: [[], [0], [1], [0, 2], [1, 2]] as [Set<Int>])
    func agreesWithAReferenceOverAGrid(allowed: Set<Int>) {
        let sizes: [UInt64] = [0, 2 * MiB, 4 * MiB, 6 * MiB, 10 * MiB]
        var seq: UInt64 = 0
        var pools: [[CleanFile]] = [[]]
        for a in sizes {
            for b in sizes {
                seq += 2
                pools.append([file(seq % 3 == 0 ? 1 : 0, a, seq: seq), file(Int(seq % 3), b, seq: seq + 1)])
            }
        }
        for pool in pools {
            for request: UInt64 in [2 * MiB, 4 * MiB, 5 * MiB, 8 * MiB, 12 * MiB] {
                let c = ClaimPolicy.choose(bytes: request, allowedNodes: allowed, from: pool)
                let ok = pool.filter { allowed.isEmpty || allowed.contains($0.node) }
                let key = { (f: CleanFile) in (f.node, f.name.seq) }
                let expected: ClaimChoice
                if let e = ok.filter({ $0.bytes == request }).min(by: { key($0) < key($1) }) {
                    expected = ClaimChoice(outcome: .hit, file: e)
                } else if let minLarger = ok.filter({ $0.bytes > request }).map(\.bytes).min() {
                    let f = ok.filter { $0.bytes == minLarger }.min(by: { key($0) < key($1) })
                    expected = ClaimChoice(outcome: .truncated, file: f)
                } else if let maxSmaller = ok.filter({ $0.bytes > 0 && $0.bytes < request }).map(\.bytes).max() {
                    let f = ok.filter { $0.bytes == maxSmaller }.min(by: { key($0) < key($1) })
                    expected = ClaimChoice(outcome: .partial, file: f)
                } else {
                    expected = ClaimChoice(outcome: .miss, file: nil)
                }
                #expect(c == expected, "pool \(pool.map(\.name)) request \(request) allowed \(allowed)")
                #expect((c.outcome == .miss) == (c.file == nil))
            }
        }
    }

    @Test func cleanFileExposesItsName() {
        let f = file(3, 6 * MiB, seq: 12)
        #expect(f.node == 3)
        #expect(f.bytes == 6 * MiB)
        #expect(f.name.description == "n3-6291456-12")
    }

    @Test func outcomeRawValuesAreStable() {
        #expect(ClaimOutcome.allCases.map(\.rawValue) == ["hit", "truncated", "partial", "miss"])
    }
}

@Suite("LearnedShapes")
struct LearnedShapesTests {
    @Test func startsEmpty() {
        let s = LearnedShapes(capacity: 4)
        #expect(s.sizes.isEmpty)
        #expect(s.capacity == 4)
    }

    @Test func mostRecentFirst() {
        var s = LearnedShapes(capacity: 8)
        for x: UInt64 in [1, 2, 3] { s.record(x * GiB) }
        #expect(s.sizes == [3 * GiB, 2 * GiB, 1 * GiB])
    }

    @Test func recordingAgainMovesToTheFrontWithoutDuplicates() {
        var s = LearnedShapes(capacity: 8)
        for x: UInt64 in [1, 2, 3, 2] { s.record(x * GiB) }
        #expect(s.sizes == [2 * GiB, 3 * GiB, 1 * GiB])
        s.record(2 * GiB)
        #expect(s.sizes == [2 * GiB, 3 * GiB, 1 * GiB])
        s.record(1 * GiB)
        #expect(s.sizes == [1 * GiB, 2 * GiB, 3 * GiB])
    }

    @Test func capacityDropsTheOldest() {
        var s = LearnedShapes(capacity: 3)
        for x: UInt64 in [1, 2, 3, 4, 5] { s.record(x) }
        #expect(s.sizes == [5, 4, 3])
        s.record(3)  // already present: reordered, nothing dropped
        #expect(s.sizes == [3, 5, 4])
        s.record(9)
        #expect(s.sizes == [9, 3, 5])
    }

    @Test func capacityOneKeepsOnlyTheLast() {
        var s = LearnedShapes(capacity: 1)
        s.record(1)
        s.record(2)
        #expect(s.sizes == [2])
    }

    @Test(arguments: [0, -1])
    func nonPositiveCapacityLearnsNothing(capacity: Int) {
        var s = LearnedShapes(capacity: capacity)
        s.record(4 * GiB)
        s.record(2 * GiB)
        #expect(s.sizes.isEmpty)
    }

    @Test func neverExceedsCapacityAndStaysUnique() {
        var s = LearnedShapes(capacity: 4)
        var x: UInt64 = 7
        for _ in 0..<200 {
            x = (x &* 6364136223846793005 &+ 1442695040888963407)
            let v = (x >> 33) % 7
            s.record(v)
            #expect(s.sizes.count <= 4)
            #expect(Set(s.sizes).count == s.sizes.count)
            #expect(s.sizes.first == v)
        }
    }
}
