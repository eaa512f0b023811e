/// The control socket protocol: one JSON object per line each way.
/// Every request carries `v`; a daemon answers a version it does not speak
/// with an error rather than guessing.
public enum ControlProtocol {
    public static let version = 1
    public static let defaultSocket = "/run/prezero/prezerod.sock"

    /// Seconds to wait before asking again after `attempt` (0, 1, …) answers of
    /// `too_many_connections`: 5 ms doubling to 200 ms, each spread by ±50% so that
    /// clients refused together do not come back together.
    public static func retryPause(_ attempt: Int) -> Double {
        min(0.005 * Double(1 << min(attempt, 6)), 0.2) * Double.random(in: 0.5...1.5)
    }

    /// Whether an answer is `too_many_connections`, which asking again may get past.
    public static func isTooManyConnections(_ answer: [UInt8]) -> Bool {
        if case .error(let e)? = try? Wire.decode(Response.self, answer) { e.code == .tooManyConnections } else { false }
    }
}
