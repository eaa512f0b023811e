// prezero-hook: libvirt's qemu hook (installed as /etc/libvirt/hooks/qemu.d/prezero).
//
// It forwards its arguments and standard input to prezerod and waits a bounded
// time. It ALWAYS exits 0 (fail-open) unless the operator asked for fail-closed,
// and it never writes to stdout: for migrate and restore libvirt reads a hook's
// stdout as replacement XML. Every fallback is one line on stderr, which goes
// to libvirtd's log. No libvirt, no XML parser, no Foundation: it starts in a
// few milliseconds.
import Glibc
import PrezeroSys

/// `/etc/prezero/hook.conf` (or $PREZERO_HOOK_CONF): `key = value` lines.
struct HookConfig {
    var socket = "/run/prezero/prezerod.sock"
    var timeoutMs = 5000
    /// Refuse to start a domain whose hand-over failed (exit 1 at start begin).
    var failClosed = false

    static func load() -> HookConfig {
        var c = HookConfig()
        let path = Environment.value("PREZERO_HOOK_CONF") ?? "/etc/prezero/hook.conf"
        for raw in (Files.readText(path) ?? "").split(separator: "\n") {
            let kv = raw.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters() }
            guard kv.count == 2, !kv[0].hasPrefix("#") else { continue }
            switch kv[0] {
            case "socket": c.socket = kv[1]
            case "timeout_ms": c.timeoutMs = Int(kv[1]) ?? c.timeoutMs
            case "fail_closed": c.failClosed = kv[1] == "true" || kv[1] == "yes" || kv[1] == "1"
            default: break
            }
        }
        return c
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}

func log(_ s: String) {
    Streams.writeError("prezero-hook: \(s)\n")
}

/// A JSON string literal.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

let args = Array(CommandLine.arguments.dropFirst())
if args.first == "--help" || args.first == "-h" {
    log("""
        usage: prezero-hook DOMAIN OPERATION SUB-OPERATION EXTRA  (called by libvirtd, domain XML on stdin)
        Forwards start/stopped/release calls to prezerod; always exits 0 and writes nothing to stdout.
        Config: /etc/prezero/hook.conf (or $PREZERO_HOOK_CONF) with socket=, timeout_ms=, fail_closed=
        """)
    exit(0)
}

let config = HookConfig.load()
// Only these calls matter; anything else returns at once without touching the daemon.
let forwarded: Set<[String]> = [["start", "begin"], ["stopped", "end"], ["release", "end"]]
guard args.count >= 3, forwarded.contains([args[1], args[2]]) else { exit(0) }
let isStart = args[1] == "start"

let stdinBytes = Streams.readInput(limit: 16 << 20)
let xml = String(decoding: stdinBytes, as: UTF8.self)
let request = "{\"v\":1,\"op\":\"hook\",\"hook\":{\"args\":[" + args.map(quoted).joined(separator: ",")
    + "],\"stdin\":" + quoted(xml) + "}}\n"

func fallback(_ why: String) -> Never {
    if isStart && config.failClosed {
        log("\(why); fail_closed is set, so the start of \(args[0]) is refused")
        exit(1)
    }
    log("\(why); \(args[0]) \(isStart ? "starts without pre-zeroed pages" : "is not tracked further here")")
    exit(0)
}

let answer: [UInt8]
do {
    let conn = try UnixConnection(connectingTo: config.socket)
    try conn.setTimeout(seconds: Double(config.timeoutMs) / 1000)
    try conn.writeAll(Array(request.utf8))
    conn.shutdownWrite()
    answer = try conn.readAll(max: 1 << 20)
} catch {
    let why = error.errno == EAGAIN || error.errno == EWOULDBLOCK ? "prezerod did not answer within \(config.timeoutMs) ms" : "cannot reach prezerod: \(error)"
    fallback(why)
}
let text = String(decoding: answer, as: UTF8.self)
if !text.contains("\"ok\":true") {
    // The daemon's message is one line of JSON; pass it on as it is.
    fallback("prezerod refused \(args[1]) \(args[2]): \(text.isEmpty ? "no answer" : String(text.prefix(2000)).split(separator: "\n").joined(separator: " "))")
}
exit(0)
