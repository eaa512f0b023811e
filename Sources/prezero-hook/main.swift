// prezero-hook: the libvirt qemu hook. Its daemon side is built in the libvirt
// issue; until then it does what a fail-open hook must do with nothing to
// forward to: write nothing to stdout (libvirt reads it as XML for
// migrate/restore) and exit 0 so that no VM start is ever held up.
import Glibc

let usage = """
    usage: prezero-hook DOMAIN OPERATION SUB-OPERATION EXTRA
    The libvirt qemu hook of prezero, installed as /etc/libvirt/hooks/qemu.d/prezero.
    It always exits 0 and writes nothing to stdout.

    """
let args = CommandLine.arguments
if args.count > 1, args[1] == "--help" || args[1] == "-h" {
    _ = usage.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
}
exit(0)
