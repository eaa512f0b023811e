import PrezeroCore
import Testing

@Suite("lease table: its indexes agree with a scan of every lease")
struct LeaseTableTests {
    @Test("10,000 random inserts, replacements, inode changes and removals: every lookup matches the scan")
    func indexesMatchScan() {
        var t = LeaseTable()
        var g = SeededRandom(7)
        func r(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        let uuids = ["aaaa", "bbbb", "cccc"]
        for i in 0..<10_000 {
            let key = r(3) == 0 ? "claim-\(r(40))" : "\(uuids[r(3)]).ram\(r(8))"
            switch r(4) {
            case 0:
                t[key] = nil
            case 1:
                t[key]?.inode = UInt64(i)   // a claim's link learns its file's inode: unique, as files are
            default:
                t[key] = Lease(key: key, mount: r(2), file: PoolFileName(node: 0, bytes: UInt64(1 + r(4)) << 21, seq: UInt64(i)),
                               dest: nil, inode: r(4) == 0 ? 0 : UInt64(i), claiming: r(5) == 0, claimant: UInt32(r(3)))
            }
            for uid in 0..<3 {
                let scan = t.values.filter { $0.claimant == UInt32(uid) }.reduce(0) { $0 + $1.file.bytes }
                #expect(t.bytes(claimant: UInt32(uid)) == scan)
            }
            for u in uuids {
                #expect(t.keys(group: u) == t.keys.filter { $0.hasPrefix(u + ".") }.sorted())
            }
            for l in t.values where l.inode != 0 {
                #expect(t.lease(mount: l.mount, inode: l.inode) == l)
                #expect(t.lease(mount: 1 - l.mount, inode: l.inode) == nil)
            }
            #expect(t.lease(mount: 0, inode: UInt64(i + 1)) == nil)
        }
    }
}
