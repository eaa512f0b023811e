// prezero-hook: libvirt's qemu hook (installed as /etc/libvirt/hooks/qemu.d/prezero).
//
// It forwards its arguments and standard input to prezerod and waits a bounded
// time. It ALWAYS exits 0 (fail-open) unless the operator asked for fail-closed,
// and it never writes to stdout: for migrate and restore libvirt reads a hook's
// stdout as replacement XML. Every fallback is one line on stderr, which goes
// to libvirtd's log. No libvirt, no XML parser, no Foundation: it starts in about
// a millisecond. The request and the answer are PrezeroProtocol's types, as in the daemon.
import Glibc
import PrezeroProtocol
import PrezeroSys

func log(_ s: String) {
    Streams.writeError("prezero-hook: \(s)\n")
}

let args = Array(CommandLine.arguments.dropFirst())
if args.first == "--help" || args.first == "-h" {
    log("""
        usage: prezero-hook DOMAIN OPERATION SUB-OPERATION EXTRA  (called by libvirtd, domain XML on stdin)
        Forwards start/stopped/release calls to prezerod within timeout_ms in all; writes nothing to stdout.
        Exits 0, or 1 at start begin under fail_closed when prezerod failed or any backend's hand-over did.
        Config: /etc/prezero/hook.conf (or $PREZERO_HOOK_CONF) with socket=, timeout_ms=, fail_closed=
        """)
    exit(0)
}

// Only the calls in HookCall.forwarded matter; anything else returns at once.
guard args.count >= 3, HookCall.forwarded.contains([args[1], args[2]]) else { exit(0) }
let configPath = Environment.value("PREZERO_HOOK_CONF") ?? HookSettings.defaultPath
let config = HookSettings(parsing: Files.readText(configPath) ?? "")
// A mistake in hook.conf is an error, but not one that may stop a domain from starting.
for problem in config.problems { log("error: \(configPath) \(problem)") }
let isStart = args[1] == "start"
guard let request = HookCall.request(args: args, stdin: Streams.readInput(limit: 16 << 20)) else { exit(0) }

func fallback(_ why: String) -> Never {
    if isStart && config.failClosed {
        log("\(why); fail_closed is set, so the start of \(args[0]) is refused")
        exit(1)
    }
    log("\(why); \(args[0]) \(isStart ? "starts without pre-zeroed pages" : "is not tracked further here")")
    exit(0)
}

/// One exchange with prezerod, asked again while it answers `too_many_connections`
/// (nothing was done), all within `timeout_ms` from the start: the connect too, which
/// blocks while prezerod's listen queue is full (prezerod stopped or hung).
func ask() -> [UInt8] {
    let end = monotonicSeconds() + Double(config.timeoutMs) / 1000
    for attempt in 0... {
        let answer: [UInt8]
        do {
            answer = try UnixConnection.exchange(path: config.socket, Wire.encode(request), maxAnswer: 1 << 20, deadline: end)
        } catch {
            fallback(error.errno != ETIMEDOUT ? "cannot reach prezerod: \(error)"
                : error.call == "connect" ? "prezerod did not accept the connection within \(config.timeoutMs) ms (its listen queue at \(config.socket) is full: is it stopped or hung?)"
                : "prezerod did not answer within \(config.timeoutMs) ms")
        }
        let pause = ControlProtocol.retryPause(attempt)
        guard ControlProtocol.isTooManyConnections(answer), monotonicSeconds() + pause < end else { return answer }
        sleepSeconds(pause)
    }
    fatalError("unreachable")
}
let answer = ask()
// An error, or a failed hand-over for any backend: under fail_closed the start is refused.
if let why = HookCall.refusal(answer) {
    fallback("prezerod did not complete \(args[1]) \(args[2]): \(why)")
}
exit(0)
