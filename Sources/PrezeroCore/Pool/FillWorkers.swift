/// How many files a (mount, node) pool fills at once. Separate files fill in parallel
/// (each fallocate zeroes its own pages); one file's range split over threads does not.
public enum FillWorkers {
    public static let most = 64

    /// The configured count, or half the node's CPUs (at least 1, at most 16): refills
    /// come in bursts after launches, and the other half is left to the guests.
    public static func count(configured: Int?, nodeCPUs: Int) -> Int {
        if let n = configured { return min(max(n, 1), most) }
        return min(max(nodeCPUs / 2, 1), 16)
    }
}
