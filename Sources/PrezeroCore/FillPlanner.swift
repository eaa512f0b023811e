import PrezeroProtocol

/// What a node worker should fill next, given what the pool holds.
/// Pure: the caller passes the node's counters and clean files.
public enum FillPlanner {
    /// - Parameters:
    ///   - target: bytes the pool should hold on this node (clean + being filled).
    ///   - held: bytes already clean or being filled on this node.
    ///   - cleanSizes: sizes of the clean files on this node.
    ///   - learned: recently claimed sizes, most recent first.
    ///   - fileSize: default size of a pool file.
    ///   - freeBytes: the node's free huge-page bytes.
    ///   - keepFree: bytes that must stay free for other users.
    ///   - pageSize: huge-page size; every file is a multiple of it.
    /// - Returns: the size of the next file to create, or nil when there is nothing to do.
    public static func next(
        target: UInt64, held: UInt64, cleanSizes: [UInt64], learned: [UInt64],
        fileSize: UInt64, freeBytes: UInt64, keepFree: UInt64, pageSize: UInt64
    ) -> UInt64? {
        guard held < target, freeBytes > keepFree else { return nil }
        let room = min(target - held, freeBytes - keepFree) / pageSize * pageSize
        guard room > 0 else { return nil }
        // A learned shape with no clean file of its size comes first, if it fits.
        for shape in learned where !cleanSizes.contains(shape) {
            let s = ByteSize.roundUp(shape, to: pageSize)
            if s <= room { return s }
        }
        return min(ByteSize.roundUp(fileSize, to: pageSize), room)
    }
}

/// Which clean files to give back so that `needBytes` more become free on a node.
public enum YieldPlanner {
    /// One clean file to give back, whole or in part.
    public struct Step: Equatable, Sendable {
        public var file: PoolFileName
        /// New size of the file; 0 removes it.
        public var keepBytes: UInt64
    }

    /// Gives back whole files smallest first, and cuts the last one only as far
    /// as needed, so that the large files learned shapes rely on survive.
    public static func plan(needBytes: UInt64, clean: [PoolFileName], pageSize: UInt64) -> [Step] {
        var need = ByteSize.roundUp(needBytes, to: pageSize)
        var steps: [Step] = []
        for f in clean.sorted(by: { ($0.bytes, $0.seq) < ($1.bytes, $1.seq) }) where need > 0 {
            if f.bytes <= need {
                steps.append(Step(file: f, keepBytes: 0))
                need -= f.bytes
            } else {
                steps.append(Step(file: f, keepBytes: f.bytes - need))
                need = 0
            }
        }
        return steps
    }
}

/// How much a worker zeroes between two checks (shutdown, budget, free pages).
public enum WorkChunk {
    /// The configured chunk, a whole number of pages; under a budget no more than
    /// 1/20 s of it, so that the rate stays smooth rather than bursty.
    public static func bytes(configured: UInt64, budget: UInt64, pageSize: UInt64) -> UInt64 {
        var c = configured
        if budget > 0 { c = min(c, budget / 20) }
        return max(c / pageSize * pageSize, pageSize)
    }
}
