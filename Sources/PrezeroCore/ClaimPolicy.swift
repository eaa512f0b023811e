import PrezeroProtocol

/// A clean file the policy may choose from.
public struct CleanFile: Hashable, Sendable {
    public var name: PoolFileName
    /// The clean file `name`.
    public init(_ name: PoolFileName) { self.name = name }
    public var node: Int { name.node }
    public var bytes: UInt64 { name.bytes }
}

/// What the claim policy picked.
public struct ClaimChoice: Equatable, Sendable {
    public var outcome: ClaimOutcome
    /// nil for a miss.
    public var file: CleanFile?

    /// A choice of `file` with `outcome`; nil for a miss.
    public init(outcome: ClaimOutcome, file: CleanFile?) {
        self.outcome = outcome
        self.file = file
    }
}

/// The claim policy, in order: exact size, smallest larger (truncated), largest
/// smaller (partial, extended at claim time), miss. Only files on an allowed
/// node are considered; an empty node set allows every node.
public enum ClaimPolicy {
    /// The file to hand out for a claim of `bytes`, by the policy above, and its outcome.
    public static func choose(bytes: UInt64, allowedNodes: Set<Int>, from clean: [CleanFile]) -> ClaimChoice {
        let candidates = clean.filter { allowedNodes.isEmpty || allowedNodes.contains($0.node) }
        // Ties go to the lowest node, then the oldest file, so results are stable.
        func order(_ a: CleanFile, _ b: CleanFile) -> Bool {
            (a.node, a.name.seq) < (b.node, b.name.seq)
        }
        if let exact = candidates.filter({ $0.bytes == bytes }).min(by: order) {
            return ClaimChoice(outcome: .hit, file: exact)
        }
        if let larger = candidates.filter({ $0.bytes > bytes })
            .min(by: { ($0.bytes, $0.node, $0.name.seq) < ($1.bytes, $1.node, $1.name.seq) }) {
            return ClaimChoice(outcome: .truncated, file: larger)
        }
        if let smaller = candidates.filter({ $0.bytes > 0 && $0.bytes < bytes })
            .min(by: { ($1.bytes, $0.node, $0.name.seq) < ($0.bytes, $1.node, $1.name.seq) }) {
            return ClaimChoice(outcome: .partial, file: smaller)
        }
        return ClaimChoice(outcome: .miss, file: nil)
    }
}

/// Sizes claimed recently, kept in the pool as exact-size files.
public struct LearnedShapes: Sendable, Equatable {
    public private(set) var sizes: [UInt64] = []  // most recent first
    public let capacity: Int

    /// Keeps at most `capacity` sizes (`learned_shapes`); 0 learns none.
    public init(capacity: Int) { self.capacity = capacity }

    /// Puts a claimed size first, dropping it from further back and the oldest past `capacity`.
    public mutating func record(_ bytes: UInt64) {
        guard capacity > 0 else { return }
        sizes.removeAll { $0 == bytes }
        sizes.insert(bytes, at: 0)
        if sizes.count > capacity { sizes.removeLast(sizes.count - capacity) }
    }
}
