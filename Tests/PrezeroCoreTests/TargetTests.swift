import PrezeroProtocol
import Testing
@testable import PrezeroCore

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// Pool targets: what fill and drain set.
@Suite("targets: fill and drain")
struct TargetTests {
    @Test("a fill with no target of its own goes back to the configured target, also after a drain")
    func fillWithoutTargetRestoresTheConfiguredOne() {
        var s = PoolState(config: Config(), mounts: [(2 * MiB, [0], MountConfig(path: "/h", target: .bytes(64 * MiB)))])
        let k = NodeKey(mount: 0, node: 0)
        s.setTargets([k], drain: true, target: nil)
        #expect(s.target(k, totalBytes: GiB) == 0)
        s.setTargets([k], drain: false, target: nil)
        #expect(s.target(k, totalBytes: GiB) == 64 * MiB)
        s.setTargets([k], drain: false, target: .bytes(8 * MiB))
        #expect(s.target(k, totalBytes: GiB) == 8 * MiB)
    }
}
