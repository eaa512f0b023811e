import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys
import Testing

/// Where prezerod agrees to run.
extension PoolTests {
    @Test("prezerod refuses to start outside the initial PID namespace, saying why")
    func refusesAnotherPIDNamespace() throws {
        let pool = try TestPool(mountConfig: "target: 0")
        defer { pool.close() }
        // With a /proc of its own (a container's), and with the host's /proc seen from inside.
        for unshare in [["/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount-proc"], ["/usr/bin/unshare", "--pid", "--fork", "--kill-child"]] {
            let r = try run(unshare + [Binaries.prezerod, "--config", pool.configPath], timeout: 30)
            #expect(r.status != 0, "\(unshare): \(r.err)")
            #expect(r.err.contains("not in the host's initial PID namespace") && r.err.contains("run prezerod on the host"), "\(r.err)")
            #expect(r.err.split(separator: "\n").count == 1, "one line: \(r.err)")
        }
        #expect(!FileManager.default.fileExists(atPath: pool.socket), "it never got as far as its socket")
        try pool.start()
    }
}
