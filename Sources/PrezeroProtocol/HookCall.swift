/// prezero-hook's side of a libvirt qemu hook call, as values: its settings and the
/// request it forwards. Kept here, apart from the hook's I/O, so that tests and fuzzers
/// reach exactly the code the hook runs.
public struct HookSettings: Sendable, Equatable {
    public static let defaultPath = "/etc/prezero/hook.conf"

    public var socket = ControlProtocol.defaultSocket
    public var timeoutMs = 5000
    /// Refuse to start a domain whose hand-over failed (exit 1 at start begin).
    public var failClosed = false

    /// What hook.conf may set.
    public static let keys = ["socket", "timeout_ms", "fail_closed"]
    /// What was wrong in hook.conf, one line each (an unknown key, a value that does not
    /// read, a line that is not `key = value`), for the hook to log as errors.
    public var problems: [String] = []

    /// The defaults: prezerod's socket, 5 s, and fail open.
    public init() {}

    /// `key = value` lines; `#` starts a comment line. Unknown keys and unreadable
    /// values keep the default: a broken hook.conf must not stop a domain from starting.
    /// Each is reported in `problems`.
    public init(parsing text: String) {
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = trimmed(String(raw))
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            func problem(_ s: String) { problems.append("line \(i + 1): \(s)") }
            let kv = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { trimmed(String($0)) }
            guard kv.count == 2 else {
                problem("'\(printable(line))' is not key = value; it is ignored (known keys: \(Self.keys.joined(separator: ", ")))")
                continue
            }
            let (key, value) = (kv[0], kv[1])
            switch key {
            case "socket":
                if value.isEmpty { problem("socket is empty; the default \(socket) applies") } else { socket = value }
            case "timeout_ms":
                if let ms = Int(value) {
                    timeoutMs = min(max(ms, 1), 600_000)
                    if timeoutMs != ms { problem("timeout_ms = \(ms) is outside 1...600000; \(timeoutMs) applies") }
                } else { problem("timeout_ms = '\(printable(value))' is not a whole number of milliseconds; the default \(timeoutMs) applies") }
            case "fail_closed":
                if ["true", "yes", "1"].contains(value) { failClosed = true }
                else if ["false", "no", "0"].contains(value) { failClosed = false }
                else { problem("fail_closed = '\(printable(value))' is not true or false; the default \(failClosed) applies") }
            default:
                problem("unknown key '\(printable(key))' (known keys: \(Self.keys.joined(separator: ", "))); it is ignored and the defaults apply")
            }
        }
    }
}

/// Which libvirt hook calls prezero-hook forwards, and how it reads prezerod's answer.
public enum HookCall {
    /// The calls prezerod acts on: anything else returns at once without touching it.
    public static let forwarded: Set<[String]> = [["start", "begin"], ["stopped", "end"], ["release", "end"]]

    /// The request for a call (`DOMAIN OPERATION SUB-OPERATION EXTRA`, domain XML on
    /// stdin), or nil when prezerod has nothing to do with it.
    public static func request(args: [String], stdin: [UInt8]) -> Request? {
        guard args.count >= 3, forwarded.contains([args[1], args[2]]) else { return nil }
        return .hook(HookRequest(args: args, stdin: String(decoding: stdin, as: UTF8.self)))
    }

    /// nil when prezerod did what the call asked, else why not, in one line: an error,
    /// or a hand-over that failed for any backend, even where others succeeded.
    public static func refusal(_ answer: [UInt8]) -> String? {
        guard !answer.isEmpty else { return "no answer" }
        do {
            switch try Wire.decode(Response.self, answer) {
            case .hook(let r) where !r.failed.isEmpty:
                return "not handed over: \(r.failed.joined(separator: "; "))"
            case .hook: return nil
            case .error(let e): return "\(e.message) (\(e.code.rawValue))"
            case let other: return "an answer of kind \(other.kind) to a hook call"
            }
        } catch {
            return "an unreadable answer: \(Wire.describe(error))"
        }
    }
}
