import Logging
import PrezeroCore
import PrezeroProtocol

/// What the daemon does with libvirt's hook calls. Their domain XML needs an XML parser
/// (Foundation), which this target does not link, so prezerod hands a handler in
/// (PrezeroHookHandler); a daemon without one, such as prezero-bench's, refuses hook calls.
public protocol HookHandling: Sendable {
    func hook(_ h: HookRequest, daemon: PoolDaemon) throws(ControlError) -> HookResult
}

/// The daemon as a hook handler in another target sees it: claims, releases and make-room
/// as the control requests do them, and the few facts about its pools a plan needs.
extension PoolDaemon {
    /// Each pool mount's path and page size, in the order of the pools.
    package var poolMounts: [(path: String, pageSize: UInt64)] { pools.map { ($0.mount.path, $0.mount.pageSize) } }

    /// Whether a lease with this key exists, released or not.
    package func hasLease(_ key: String) -> Bool { engine.lease(key) != nil }

    /// The keys of the leases of one group (a domain's UUID).
    package func leaseKeys(group: String) -> [String] { engine.leaseKeys(group: group) }

    /// Gives back `pages` from the nodes of the pool of `pageSize` that hold the most; false if there is no such pool.
    package func makeRoomAnywhere(pageSize: UInt64, pages: UInt64) -> Bool {
        guard let mi = pools.firstIndex(where: { $0.mount.pageSize == pageSize }) else { return false }
        engine.makeRoomAnywhere(mount: mi, pages: pages)
        return true
    }
}
