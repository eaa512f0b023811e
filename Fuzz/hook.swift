// libFuzzer harness: one qemu hook call as prezero-hook gets it, hook.conf NUL argv
// (a line each) NUL stdin, through the code the hook runs and the daemon's first step
// (scripts/fuzz.sh links PrezeroCore, which holds PrezeroProtocol).
import PrezeroCore
import PrezeroLibvirtModel
import PrezeroProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let parts = inputParts(data, size, 3)
    let settings = HookSettings(parsing: parts[0])
    for p in settings.problems { checkMessage(p, from: "HookSettings") }
    guard (1...600_000).contains(settings.timeoutMs), !settings.socket.isEmpty else {
        fatalError("hook.conf gave settings the hook cannot use: \(settings)")
    }
    let args = parts.count > 1 ? parts[1].split(separator: "\n", omittingEmptySubsequences: false).map(String.init) : []
    let stdin = parts.count > 2 ? Array(parts[2].utf8) : []
    let forwarded = args.count >= 3 && HookCall.forwarded.contains([args[1], args[2]])
    guard let request = HookCall.request(args: args, stdin: stdin) else {
        if forwarded { fatalError("a call prezerod acts on was not forwarded: \(args)") }
        return 0
    }
    guard forwarded, case .success(request) = Wire.decodeRequest(Wire.encode(request)) else {
        fatalError("the hook's request does not reach the daemon as sent: \(request)")
    }
    guard case .hook(let h) = request else { fatalError("the hook sent a request of another kind: \(request)") }
    do {
        _ = try DomainXML.parse(h.stdin)
    } catch {
        checkMessage(error.description, from: "DomainXML.parse")
    }
    return 0
}
