// libFuzzer harness: prezerod's YAML configuration (scripts/fuzz.sh links PrezeroCore).
// A file is read or refused in one line; one that is read parses the same again.
import PrezeroConfigYAML
import PrezeroCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = inputText(data, size)
    do {
        let config = try Config.parse(yaml: text)
        guard (try? Config.parse(yaml: text)) == config else { fatalError("the same YAML read twice differs") }
    } catch {
        checkMessage(error.description, from: "Config.parse")
    }
    return 0
}
