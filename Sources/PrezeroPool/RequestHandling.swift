import PrezeroCore
import PrezeroProtocol

/// What the control server serves: one whole request from an admitted caller, answered.
/// prezerod gives it its `PoolDaemon`; the control server's own tests give it a scripted
/// handler, so that connections, lanes, deadlines and stops are tested without root.
public protocol RequestHandling: Sendable {
    /// The socket, its group, the callers admitted, the request limits.
    var config: Config { get }
    func handle(_ r: Request, from caller: Caller) -> Response
}

extension PoolDaemon: RequestHandling {}
