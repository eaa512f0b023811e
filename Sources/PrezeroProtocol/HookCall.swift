/// prezero-hook's side of a libvirt qemu hook call, as values: its settings and the
/// request it forwards. Kept here, apart from the hook's I/O, so that tests and fuzzers
/// reach exactly the code the hook runs.
public struct HookSettings: Sendable, Equatable {
    public static let defaultPath = "/etc/prezero/hook.conf"

    public var socket = ControlProtocol.defaultSocket
    public var timeoutMs = 5000
    /// Refuse to start a domain whose hand-over failed (exit 1 at start begin).
    public var failClosed = false

    public init() {}

    /// `key = value` lines; `#` starts a comment line. Unknown keys and unreadable
    /// values keep the default: a broken hook.conf must not stop a domain from starting.
    public init(parsing text: String) {
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let kv = raw.split(separator: "=", maxSplits: 1).map { trimmed(String($0)) }
            guard kv.count == 2, !kv[0].hasPrefix("#") else { continue }
            switch kv[0] {
            case "socket" where !kv[1].isEmpty: socket = kv[1]
            case "timeout_ms": timeoutMs = Int(kv[1]).map { min(max($0, 1), 600_000) } ?? timeoutMs
            case "fail_closed": failClosed = ["true", "yes", "1"].contains(kv[1])
            default: break
            }
        }
    }
}

public enum HookCall {
    /// The calls prezerod acts on: anything else returns at once without touching it.
    public static let forwarded: Set<[String]> = [["start", "begin"], ["stopped", "end"], ["release", "end"]]

    /// The request for a call (`DOMAIN OPERATION SUB-OPERATION EXTRA`, domain XML on
    /// stdin), or nil when prezerod has nothing to do with it.
    public static func request(args: [String], stdin: [UInt8]) -> Request? {
        guard args.count >= 3, forwarded.contains([args[1], args[2]]) else { return nil }
        return .hook(HookRequest(args: args, stdin: String(decoding: stdin, as: UTF8.self)))
    }

    /// nil when prezerod did what the call asked, else why not, in one line.
    public static func refusal(_ answer: [UInt8]) -> String? {
        guard !answer.isEmpty else { return "no answer" }
        do {
            switch try Wire.decode(Response.self, answer) {
            case .hook: return nil
            case .error(let e): return "\(e.message) (\(e.code.rawValue))"
            case let other: return "an answer of kind \(other.kind) to a hook call"
            }
        } catch {
            return "an unreadable answer: \(Wire.describe(error))"
        }
    }
}
