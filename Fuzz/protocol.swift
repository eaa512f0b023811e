// libFuzzer harness: a control-socket request line, as the daemon decodes it, and an
// answer line, as the CLI and the hook read it. Linked against PrezeroProtocol
// (scripts/fuzz.sh). A decoded request must encode to a line that decodes back to it.
import PrezeroProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let line = Array(UnsafeBufferPointer(start: data, count: size))
    if case .success(let r) = Wire.decodeRequest(line) {
        guard case .success(let back) = Wire.decodeRequest(Wire.encode(r)), back == r else {
            fatalError("request does not survive encode/decode: \(r)")
        }
    }
    if let r = try? Wire.decode(Response.self, line) {
        guard (try? Wire.decode(Response.self, Wire.encode(r))) == r else {
            fatalError("response does not survive encode/decode: \(r)")
        }
    }
    _ = HookCall.refusal(line)
    return 0
}
