// libFuzzer harness: libvirt's qemu.conf, as the hook's daemon side reads it at each
// call (scripts/fuzz.sh links PrezeroCore). Read or refused in one line, and a file
// is read alike each time.
import PrezeroCore
import PrezeroQemuModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = inputText(data, size)
    do {
        let conf = try QemuConf.parse(text)
        guard (try? QemuConf.parse(text)) == conf else { fatalError("the same qemu.conf read twice differs") }
    } catch {
        checkMessage(error.description, from: "QemuConf.parse")
    }
    return 0
}
