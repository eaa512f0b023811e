import Foundation
import Glibc
import Testing

extension HostTests {
    @Suite("prezero install: files under a directory of its own")
    struct Install: HostSuite {
        @Test("prezero install is idempotent, never overwrites a config, and --uninstall removes the hook")
        func install() throws {
            let base = "/tmp/prezero-test-\(getpid())-install"
            defer { try? FileManager.default.removeItem(atPath: base) }
            let args = [Binaries.prezero, "install", "--hooks-dir", base + "/hooks", "--config-dir", base + "/etc",
                        "--hook", Binaries.dir + "/prezero-hook", "--json"]
            func report(_ r: (status: Int32, out: String, err: String)) throws -> [String: Any] {
                #expect(r.status == 0, "\(r.err)")
                return try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
            }
            let first = try report(run(args))
            #expect(first["hook_action"] as? String == "installed")
            #expect(first["restart_libvirtd"] as? Bool == true)
            let hook = base + "/hooks/prezero"
            #expect(FileManager.default.contents(atPath: hook) == FileManager.default.contents(atPath: Binaries.dir + "/prezero-hook"))
            #expect(access(hook, X_OK) == 0)
            try "target: 8G\n".write(toFile: base + "/etc/prezerod.yaml", atomically: true, encoding: .utf8)
            let second = try report(run(args))
            #expect(second["hook_action"] as? String == "up to date")
            #expect((second["configs"] as? [String: String])?.values.allSatisfy { $0 == "kept" } == true)
            #expect(try String(contentsOfFile: base + "/etc/prezerod.yaml", encoding: .utf8) == "target: 8G\n")
            let removed = try report(run(args + ["--uninstall"]))
            #expect(removed["hook_action"] as? String == "removed")
            #expect(!FileManager.default.fileExists(atPath: hook))
            #expect(try report(run(args + ["--uninstall"]))["hook_action"] as? String == "not installed")
        }
    }
}
