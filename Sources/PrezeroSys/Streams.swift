import Glibc

/// The process's standard streams.
public enum Streams {
    /// Writes to standard error, unbuffered (one line reaches libvirtd's log whole).
    /// The corresponding C function is `write` on descriptor 2, retried on EINTR and short writes.
    public static func writeError(_ s: String) {
        var bytes = Array(s.utf8)
        var at = 0
        while at < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + at, $0.count - at) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            at += n
        }
        bytes.removeAll()
    }

    /// Reads standard input to its end, or to just past `limit` bytes.
    /// The corresponding C function is `read` on descriptor 0.
    public static func readInput(limit: Int) -> [UInt8] {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count <= limit {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Is standard error a terminal (so that progress may redraw its line)?
    public static var errorIsTerminal: Bool { isatty(2) != 0 }
}
