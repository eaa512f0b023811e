import ArgumentParser
import Foundation
import PrezeroCore
import PrezeroSys

struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install (or remove) the libvirt hook and a default config. Idempotent.",
        discussion: """
            Puts prezero-hook at HOOKS_DIR/prezero and, if they do not exist yet, CONFIG_DIR/prezerod.yaml
            and CONFIG_DIR/hook.conf. Existing config files are never overwritten. libvirtd finds hooks only
            when it starts: restart it after installing.
            """)

    @Option(name: .long, help: "libvirt's qemu hook directory (under --root).")
    var hooksDir = "/etc/libvirt/hooks/qemu.d"
    @Option(name: .long, help: "prezero's config directory (under --root).")
    var configDir = "/etc/prezero"
    @Option(name: .long, help: "A staging root the directories are under, as make install's DESTDIR.")
    var root = ""
    @Option(name: .long, help: "The prezero-hook executable to install (default: the one beside this prezero, else PREFIX/libexec/prezero/prezero-hook).")
    var hook: String?
    @Flag(name: .long, help: "Remove the hook instead (config files are kept).")
    var uninstall = false
    @Flag(name: .long, help: "Print what was done as JSON.")
    var json = false

    struct Report: Codable {
        var hook: String
        var hookAction: String
        var configs: [String: String]
        var restartLibvirtd: Bool
        enum CodingKeys: String, CodingKey {
            case hook, configs
            case hookAction = "hook_action", restartLibvirtd = "restart_libvirtd"
        }
    }

    func run() throws {
        let fm = FileManager.default
        let hooksDir = root + hooksDir, configDir = root + configDir
        let target = hooksDir + "/prezero"
        var report = Report(hook: target, hookAction: "", configs: [:], restartLibvirtd: false)
        do {
            if uninstall {
                if fm.fileExists(atPath: target) {
                    try fm.removeItem(atPath: target)
                    report.hookAction = "removed"
                } else {
                    report.hookAction = "not installed"
                }
            } else {
                // Beside this prezero (a build directory), or where `make install` puts it.
                let here = URL(fileURLWithPath: Binaries.dir)
                let candidates = [here.appendingPathComponent("prezero-hook").path,
                                  here.deletingLastPathComponent().appendingPathComponent("libexec/prezero/prezero-hook").path]
                let source = hook ?? candidates.first { fm.isExecutableFile(atPath: $0) } ?? candidates.first ?? ""
                guard let bytes = fm.contents(atPath: source) else {
                    throw CLIError("cannot read the hook executable \(source); build it (make release) or pass --hook PATH")
                }
                try fm.createDirectory(atPath: hooksDir, withIntermediateDirectories: true)
                if fm.contents(atPath: target) == bytes {
                    report.hookAction = "up to date"
                } else {
                    // Write beside it and rename, so libvirtd never runs a half-written hook.
                    let tmp = hooksDir + "/.prezero.new"
                    guard fm.createFile(atPath: tmp, contents: bytes, attributes: [.posixPermissions: 0o755]) else {
                        throw CLIError("cannot write \(tmp)")
                    }
                    try Files.renamePath(tmp, target)
                    report.hookAction = "installed"
                    report.restartLibvirtd = true
                }
                try fm.createDirectory(atPath: configDir, withIntermediateDirectories: true)
                for (name, text) in [("prezerod.yaml", Self.defaultConfig), ("hook.conf", Self.defaultHookConf)] {
                    let path = configDir + "/" + name
                    if fm.fileExists(atPath: path) {
                        report.configs[path] = "kept"
                    } else {
                        guard fm.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644]) else {
                            throw CLIError("cannot write \(path)")
                        }
                        report.configs[path] = "created"
                    }
                }
            }
        } catch let e as CLIError {
            try guarded { throw e }
        } catch {
            try guarded { throw CLIError("install: \(error.localizedDescription)") }
        }
        if json {
            printJSON(report)
        } else {
            print("\(report.hook): \(report.hookAction)")
            for (p, a) in report.configs.sorted(by: { $0.key < $1.key }) { print("\(p): \(a)") }
            if report.restartLibvirtd { print("restart libvirtd so that it finds the hook") }
        }
    }

    static let defaultConfig = """
        # prezerod configuration. Every key has a default (see the README's config
        # reference); prezerod runs with this file empty.
        # target: 50%
        # min_free: 10%

        """

    static let defaultHookConf = """
        # prezero-hook: how the libvirt hook reaches prezerod.
        socket = /run/prezero/prezerod.sock
        # How long a domain start may wait for prezerod (fail-open after that).
        timeout_ms = 5000
        # true: refuse to start a domain whose hand-over failed, instead of starting it slowly.
        fail_closed = false

        """
}
