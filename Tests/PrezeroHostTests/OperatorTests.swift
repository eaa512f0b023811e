import Foundation
import Glibc
import PrezeroCore
import PrezeroSys
import Testing

/// What operators install and read: the metrics textfile, the systemd units, `make install`.
extension PoolTests {
    @Test("prezerod writes a node_exporter textfile that promtool accepts, at its interval, and removes it at exit")
    func metricsTextfile() throws {
        let pool = try TestPool(config: "min_free: 0\nmetrics_textfile: {base}/textfile/prezero.prom\nmetrics_interval_ms: 200",
                                mountConfig: "target: 8M\nfile_size: 8M")
        defer { pool.close() }
        try FileManager.default.createDirectory(atPath: pool.base + "/textfile", withIntermediateDirectories: true)
        try pool.start()
        try pool.waitClean(8 * MiB)
        let file = pool.base + "/textfile/prezero.prom"
        // Written again after the fill: it shows the clean bytes.
        try waitFor("the textfile to show the filled pool", timeout: 10) {
            ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").contains("prezero_pool_clean_bytes{mount=\"\(pool.mount)\",page_size=\"2097152\",node=\"0\"} 8388608")
        }
        let check = try run(["promtool", "check", "metrics"], stdin: try String(contentsOfFile: file, encoding: .utf8))
        #expect(check.status == 0, "promtool: \(check.out)\(check.err)")
        #expect(Files.status(followingPath: file)?.permissions == 0o644, "node_exporter (not root) can read it")
        #expect(try run([Binaries.prezero, "metrics", "--socket", pool.socket]).out.contains("prezero_pool_clean_bytes"),
                "prezero metrics prints the same text")
        pool.stop()
        #expect(!FileManager.default.fileExists(atPath: file), "no stale figures after prezerod stops")
    }
}

/// The repository's root.
let repoDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

extension PoolTests {
    @Test("examples/systemd: systemd-analyze verify accepts prezerod.service and prezero.slice with no warning")
    func systemdUnits() throws {
        // verify checks that ExecStart exists: the unit is checked with it pointing at the built prezerod.
        let dir = NSTemporaryDirectory() + "prezero-units-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unit = try String(contentsOfFile: examplesDir + "/systemd/prezerod.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/sbin/prezerod "), "the path make install uses")
        #expect(unit.contains("Slice=prezero.slice") && unit.contains("ProtectSystem=strict") && unit.contains("ReadWritePaths=/dev/hugepages /run/prezero"))
        try unit.replacingOccurrences(of: "/usr/local/sbin/prezerod", with: Binaries.prezerod)
            .write(toFile: dir + "/prezerod.service", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: examplesDir + "/systemd/prezero.slice", toPath: dir + "/prezero.slice")
        let r = try run(["systemd-analyze", "verify", "--man=no", dir + "/prezerod.service", dir + "/prezero.slice"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.isEmpty && r.out.isEmpty, "no warning (an unknown key is only a warning): \(r.err)")
        let slice = try String(contentsOfFile: dir + "/prezero.slice", encoding: .utf8)
        #expect(slice.contains("CPUWeight=") && slice.contains("CPUQuota="))
    }

    @Test("make install with DESTDIR and PREFIX puts every file in its place, and uninstall takes them away")
    func makeInstall() throws {
        let dest = NSTemporaryDirectory() + "prezero-install-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dest) }
        let make = ["make", "-s", "-C", repoDir, "BIN=\(Binaries.dir)", "DESTDIR=\(dest)", "PREFIX=/opt/prezero"]
        let r = try run(make + ["install-files"])
        #expect(r.status == 0, "\(r.err)")
        let files = [
            "/opt/prezero/sbin/prezerod", "/opt/prezero/bin/prezero", "/opt/prezero/libexec/prezero/prezero-hook",
            "/etc/libvirt/hooks/qemu.d/prezero", "/etc/prezero/prezerod.yaml",
            "/opt/prezero/lib/systemd/system/prezerod.service", "/opt/prezero/lib/systemd/system/prezero.slice",
            "/opt/prezero/share/bash-completion/completions/prezero", "/opt/prezero/share/zsh/site-functions/_prezero",
            "/opt/prezero/share/doc/prezero/README.md",
        ]
        for f in files { #expect(FileManager.default.fileExists(atPath: dest + f), "\(f)") }
        for f in files.prefix(4) { #expect(FileManager.default.isExecutableFile(atPath: dest + f), "\(f) is executable") }
        let unit = (try? String(contentsOfFile: dest + "/opt/prezero/lib/systemd/system/prezerod.service", encoding: .utf8)) ?? ""
        #expect(unit.contains("ExecStart=/opt/prezero/sbin/prezerod "), "the unit runs the installed prezerod")
        let bash = (try? String(contentsOfFile: dest + "/opt/prezero/share/bash-completion/completions/prezero", encoding: .utf8)) ?? ""
        #expect(bash.contains("launch") && bash.contains("libvirt"), "completions cover every subcommand")
        // A kept config is never overwritten.
        try "target: 8G\n".write(toFile: dest + "/etc/prezero/prezerod.yaml", atomically: true, encoding: .utf8)
        #expect(try run(make + ["install-files"]).status == 0)
        #expect(try String(contentsOfFile: dest + "/etc/prezero/prezerod.yaml", encoding: .utf8) == "target: 8G\n")
        // prezero install, run from the installed tree, finds the hook in libexec.
        let hooks = dest + "/hooks-by-prezero-install"
        let pi = try run([dest + "/opt/prezero/bin/prezero", "install", "--hooks-dir", hooks, "--config-dir", dest + "/etc/prezero", "--json"])
        #expect(pi.status == 0, "\(pi.err)")
        #expect(FileManager.default.contentsEqual(atPath: hooks + "/prezero", andPath: dest + "/opt/prezero/libexec/prezero/prezero-hook"))
        let u = try run(make + ["uninstall"])
        #expect(u.status == 0, "\(u.err)")
        for f in files where f != "/etc/prezero/prezerod.yaml" { #expect(!FileManager.default.fileExists(atPath: dest + f), "\(f) removed") }
    }
}
