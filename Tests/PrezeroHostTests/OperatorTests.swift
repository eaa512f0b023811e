import Foundation
import Glibc
import PrezeroCore
import PrezeroSys
import Testing

extension HostTests {
    /// What operators install and read: the metrics textfile, the systemd units, `make install`.
    @Suite("operators: status, metrics, doctor and logs", .tags(.hugePages))
    struct Operator: HostSuite {
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
            let text = try String(contentsOfFile: file, encoding: .utf8)
            let check = try run(["promtool", "check", "metrics"], stdin: text)
            #expect(check.status == 0, "promtool: \(check.out)\(check.err)")
            // Every prezero_* series the alerting rules read is one prezerod writes.
            let rules = try String(contentsOfFile: examplesDir + "/prometheus/prezero.rules.yml", encoding: .utf8)
            let named = Set(rules.matches(of: /prezero_[a-z_]+/).map { String($0.output) })
            let written = { (name: String) in text.contains("\n\(name){") || text.contains("\n\(name) ") }
            #expect(!named.isEmpty && named.allSatisfy(written), "series the rules name but prezerod does not write: \(named.filter { !written($0) }.sorted())")
            #expect(Files.status(followingPath: file)?.permissions == 0o644, "node_exporter (not root) can read it")
            #expect(try run([Binaries.prezero, "metrics", "--socket", pool.socket]).out.contains("prezero_pool_clean_bytes"),
                    "prezero metrics prints the same text")
            pool.stop()
            #expect(!FileManager.default.fileExists(atPath: file), "no stale figures after prezerod stops")
        }

        @Test("a real scrape: Debian's node_exporter reads prezerod's textfile, Debian's Prometheus scrapes it, and PromQL answers what status --json says, a lease's bytes too")
        func prometheusScrape() throws {
            let pool = try TestPool(config: "min_free: 0\nmetrics_textfile: {base}/textfile/prezero.prom\nmetrics_interval_ms: 1000",
                                    mountConfig: "target: 8M\nfile_size: 8M")
            defer { pool.close() }
            let textDir = pool.base + "/textfile"
            try FileManager.default.createDirectory(atPath: textDir, withIntermediateDirectories: true)
            try pool.start()
            try pool.waitClean(8 * MiB)
            // Both on loopback, on ports free now, started and stopped here by PID.
            let ports = try run(["python3", "-c", "import socket\nfor _ in range(2):\n s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
                .out.split(separator: "\n").map(String.init)
            try #require(ports.count == 2)
            let exporter = try Child(["prometheus-node-exporter", "--web.listen-address=127.0.0.1:\(ports[0])", "--collector.disable-defaults",
                                      "--collector.textfile", "--collector.textfile.directory=\(textDir)"],
                                     stdout: pool.base + "/node-exporter.log", stderr: pool.base + "/node-exporter.log")
            defer { exporter.signal(SIGTERM); _ = try? exporter.wait(timeout: 10) }
            let config = pool.base + "/prometheus.yml"
            try """
                global: {scrape_interval: 1s, evaluation_interval: 1s}
                scrape_configs:
                  - job_name: node
                    static_configs: [{targets: ['127.0.0.1:\(ports[0])']}]
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let prometheus = try Child(["prometheus", "--config.file=\(config)", "--storage.tsdb.path=\(pool.base)/tsdb",
                                        "--web.listen-address=127.0.0.1:\(ports[1])"],
                                       stdout: pool.base + "/prometheus.log", stderr: pool.base + "/prometheus.log")
            defer { prometheus.signal(SIGTERM); _ = try? prometheus.wait(timeout: 30) }
            /// One PromQL instant query over the HTTP API: each sample's labels and value.
            func query(_ q: String) throws -> [(labels: [String: String], value: String)] {
                let r = try run(["curl", "-sf", "-G", "--data-urlencode", "query=\(q)", "http://127.0.0.1:\(ports[1])/api/v1/query"], timeout: 10)
                guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
                      let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]] else { return [] }
                return result.compactMap { sample in
                    guard let labels = sample["metric"] as? [String: String], let v = sample["value"] as? [Any], v.count == 2,
                          let value = v[1] as? String else { return nil }
                    return (labels, value)
                }
            }
            let clean = "prezero_pool_clean_bytes{mount=\"\(pool.mount)\",node=\"0\"}"
            try waitFor("Prometheus to have scraped prezerod's figures", timeout: 60) {
                guard exporter.isRunning, prometheus.isRunning else {
                    throw TestFailure("node_exporter or Prometheus exited: \((try? String(contentsOfFile: pool.base + "/prometheus.log", encoding: .utf8))?.suffix(2000) ?? "")")
                }
                return try query(clean).count == 1
            }
            // An idle pool: the same figure from both.
            let status = try run([Binaries.prezero, "status", "--json", "--socket", pool.socket])
            let statusJSON = try #require(try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any])
            let nodes = try #require(((statusJSON["mounts"] as? [[String: Any]])?.first)?["nodes"] as? [[String: Any]])
            let fromStatus = try #require((nodes.first { ($0["node"] as? Int) == 0 })?["clean_bytes"] as? Int)
            let fromPromQL = try query(clean)
            print("PromQL \(clean) = \(fromPromQL.map(\.value)); status --json node 0 clean_bytes = \(fromStatus)")
            #expect(fromPromQL.map(\.value) == [String(fromStatus)] && fromStatus == Int(8 * MiB))
            // A claim: its lease's bytes, by lease and VM, reach Prometheus at the next scrapes.
            _ = try pool.claim(8 * MiB, as: "scraped", lease: "scraped-vm")
            let lease = "prezero_lease_bytes{lease=\"scraped-vm\"}"
            try waitFor("the lease in Prometheus", timeout: 30) { try query(lease).first?.value == String(8 * MiB) }
            print("PromQL \(lease) = \(try query(lease).map(\.value))")
            _ = try pool.release(lease: "scraped-vm")
        }

        @Test("examples/prometheus: the alerting rules pass promtool's checks and their unit tests on synthetic series")
        func alertRules() throws {
            let dir = examplesDir + "/prometheus"
            let check = try run(["promtool", "check", "rules", dir + "/prezero.rules.yml"])
            #expect(check.status == 0 && check.out.contains("SUCCESS: 7 rules found"), "\(check.out)\(check.err)")
            let unit = try run(["sh", "-c", "cd \"$1\" && promtool test rules prezero.rules.test.yml", "sh", dir])
            #expect(unit.status == 0 && unit.out.contains("SUCCESS"), "\(unit.out)\(unit.err)")
        }

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
            // The hardening stays where it is: systemd's own exposure score (0 best, 10 worst), 2.0 today (1.7 without CAP_SETUID/CAP_SETGID).
            let sec = try run(["systemd-analyze", "security", "--offline=yes", "--threshold=25", dir + "/prezerod.service"])
            #expect(sec.status == 0, "exposure above 2.5: \(sec.out.split(separator: "\n").last ?? "")")
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
                "/etc/libvirt/hooks/qemu.d/prezero", "/opt/prezero/libexec/prezero/prezero-bench", "/etc/prezero/prezerod.yaml", "/etc/prezero/hook.conf",
                "/opt/prezero/lib/systemd/system/prezerod.service", "/opt/prezero/lib/systemd/system/prezero.slice",
                "/opt/prezero/share/bash-completion/completions/prezero", "/opt/prezero/share/zsh/site-functions/_prezero",
                "/opt/prezero/share/doc/prezero/README.md",
                "/opt/prezero/share/man/man8/prezero.8",
                "/opt/prezero/share/man/man8/prezerod.8", "/opt/prezero/share/man/man8/prezero-hook.8", "/opt/prezero/share/man/man5/prezerod.yaml.5",
            ]
            for f in files { #expect(FileManager.default.fileExists(atPath: dest + f), "\(f)") }
            for f in files.prefix(5) { #expect(FileManager.default.isExecutableFile(atPath: dest + f), "\(f) is executable") }
            let unit = (try? String(contentsOfFile: dest + "/opt/prezero/lib/systemd/system/prezerod.service", encoding: .utf8)) ?? ""
            #expect(unit.contains("ExecStart=/opt/prezero/sbin/prezerod "), "the unit runs the installed prezerod")
            // The man page comes from the commands' own help: every subcommand, and claim's options, are in it.
            let page = try run(["man", "-l", dest + "/opt/prezero/share/man/man8/prezero.8"], env: ["MANWIDTH": "200"]).out
            #expect(["claim", "release", "launch", "libvirt", "--size", "--dest", "--owner"].allSatisfy { page.contains($0) }, "\(page.prefix(600))")
            let bash = (try? String(contentsOfFile: dest + "/opt/prezero/share/bash-completion/completions/prezero", encoding: .utf8)) ?? ""
            #expect(bash.contains("launch") && bash.contains("libvirt"), "completions cover every subcommand")
            // A kept config is never overwritten.
            try "target: 8G\n".write(toFile: dest + "/etc/prezero/prezerod.yaml", atomically: true, encoding: .utf8)
            #expect(try run(make + ["install-files"]).status == 0)
            #expect(try String(contentsOfFile: dest + "/etc/prezero/prezerod.yaml", encoding: .utf8) == "target: 8G\n")
            #expect(try String(contentsOfFile: dest + "/etc/prezero/hook.conf", encoding: .utf8).contains("timeout_ms"), "hook.conf as prezero install writes it")
            // prezero install, run from the installed tree, finds the hook in libexec.
            let hooks = dest + "/hooks-by-prezero-install"
            let pi = try run([dest + "/opt/prezero/bin/prezero", "install", "--hooks-dir", hooks, "--config-dir", dest + "/etc/prezero", "--json"])
            #expect(pi.status == 0, "\(pi.err)")
            #expect(FileManager.default.contentsEqual(atPath: hooks + "/prezero", andPath: dest + "/opt/prezero/libexec/prezero/prezero-hook"))
            let u = try run(make + ["uninstall"])
            #expect(u.status == 0, "\(u.err)")
            for f in files where !f.hasPrefix("/etc/prezero/") { #expect(!FileManager.default.fileExists(atPath: dest + f), "\(f) removed") }
        }

        @Test("the unit's capabilities are prezerod's and enough: a hand-over into another user's 0700 directory, a holder of another uid keeps it leased; without CAP_CHOWN it refuses to start")
        func unitCapabilitiesSuffice() throws {
            let caps = try Self.unitCapabilities()
            #expect(Set(caps) == Set(DaemonCapabilities.needed(otherCallers: true).map { $0.name.dropFirst("CAP_".count).lowercased() }), "\(caps)")
            let pool = try TestPool(config: "min_free: 0\nreclaim_interval_ms: 100", mountConfig: "target: 4M\nfile_size: 4M")
            defer { pool.close() }
            let refused = try run(Self.withCapabilities(caps.filter { $0 != "chown" }) + [Binaries.prezerod, "--config", pool.configPath])
            #expect(refused.status != 0 && refused.err.contains("lacks CAP_CHOWN") && refused.err.contains("CapabilityBoundingSet="),
                    "without CAP_CHOWN no file can be handed over or taken back: \(refused.err)")
            try pool.start(wrapper: Self.withCapabilities(caps))
            try pool.waitClean(4 * MiB)
            // As libvirt's per-domain directory: 0700, the guest user's.
            let dom = pool.mount + "/dom"
            try FileManager.default.createDirectory(atPath: dom, withIntermediateDirectories: false)
            #expect(chown(dom, 65534, 65534) == 0 && chmod(dom, 0o700) == 0)
            let claim = try run([Binaries.prezero, "claim", "--size", "4M", "--dest", dom + "/vm", "--owner", "65534:65534",
                                 "--lease", "caps", "--socket", pool.socket])
            #expect(claim.status == 0, "\(claim.err) \(pool.log())")
            let st = Files.status(followingPath: dom + "/vm")
            #expect(st?.uid == 65534 && st?.permissions == 0o600)
            // A VMM of another uid holds the file open, then the lease is released.
            let holder = try Child(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    "/bin/sh", "-c", "exec 3<\"$0\"; exec sleep 60", dom + "/vm"])
            defer { holder.signal(SIGKILL); _ = try? holder.wait(timeout: 10) }
            try waitFor("the holder to open the file") { FileManager.default.fileExists(atPath: "/proc/\(holder.pid)/fd/3") }
            #expect(try run([Binaries.prezero, "release", "--lease", "caps", "--socket", pool.socket]).status == 0)
            sleepSeconds(1)
            #expect(try pool.node0().leasedBytes == 4 * MiB, "a held file stays leased")
            #expect(try pool.node0().recycledFiles == 0, "never taken back while held")
            holder.signal(SIGKILL)
            _ = try? holder.wait(timeout: 10)
            try pool.waitClean(4 * MiB, timeout: 30)
        }
    }
}

extension HostSuite {
    /// The capabilities examples/systemd/prezerod.service keeps (`CapabilityBoundingSet=`), as setpriv names them.
    static func unitCapabilities() throws -> [String] {
        let unit = try String(contentsOfFile: examplesDir + "/systemd/prezerod.service", encoding: .utf8)
        let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") })
        return line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ").map { $0.dropFirst("CAP_".count).lowercased() }
    }

    /// prezerod as root with only `caps`, as systemd runs it with `CapabilityBoundingSet=`.
    static func withCapabilities(_ caps: [String]) -> [String] {
        ["/usr/bin/setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all," + caps.map { "+" + $0 }.joined(separator: ",")]
    }
}

/// The repository's root.
let repoDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

