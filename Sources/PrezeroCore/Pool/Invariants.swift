/// The invariants that can be read off the state alone. The simulation checks them
/// after every step, with the rest (no former guest's byte in `clean/`, pages that
/// add up, pages on the node asked) checked against its model of the host.
extension PoolState {
    /// Every invariant the state breaks, one line each; empty when it keeps them all.
    public func violations() -> [String] {
        var v: [String] = []
        // No file in two states: every pool file has one sequence number, and sits in one list.
        var seen: [UInt64: String] = [:]
        func see(_ f: PoolFileName, _ place: String) {
            if let other = seen[f.seq] { v.append("file \(f.seq) is both \(other) and \(place)") }
            seen[f.seq] = place
        }
        for (k, nb) in nodes {
            let lists: [(String, [PoolFileName])] = [("clean", nb.clean), ("resume", nb.resume), ("filling", Array(nb.filling.keys))]
            for (name, files) in lists {
                for f in files {
                    see(f, "\(name) on \(k)")
                    // Pages sit on the node they were asked for: each list holds its node's files only.
                    if f.node != k.node { v.append("\(f) is listed on \(k)") }
                    if f.bytes % pageSize(k) != 0 { v.append("\(f) is not a whole number of pages") }
                }
            }
        }
        // No two leases share a file.
        for l in leases.values.sorted(by: { $0.key < $1.key }) { see(l.file, "lease \(l.key)") }
        return v
    }
}
