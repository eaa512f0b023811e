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
        let hooksDir = root + hooksDir, configDir = root + configDir
        let target = hooksDir + "/prezero"
        var report = Report(hook: target, hookAction: "", configs: [:], restartLibvirtd: false)
        do {
            if uninstall {
                if Files.status(followingPath: target) != nil {
                    try Files.removePath(target)
                    report.hookAction = "removed"
                } else {
                    report.hookAction = "not installed"
                }
            } else {
                // Beside this prezero (a build directory), or where `make install` puts it.
                let here = Binaries.dir
                let parent = here.split(separator: "/").dropLast().joined(separator: "/")
                let candidates = [here + "/prezero-hook", "/" + parent + "/libexec/prezero/prezero-hook"]
                let source = hook ?? candidates.first { Files.status(followingPath: $0).map { $0.isRegular && $0.permissions & 0o111 != 0 } ?? false }
                    ?? candidates[0]
                guard let bytes = Files.readBytes(source, limit: 1 << 30) else {
                    throw CLIError("cannot read the hook executable \(source); build it (make release) or pass --hook PATH")
                }
                try Files.makeDirectories(hooksDir, mode: 0o755)
                if Files.readBytes(target, limit: 1 << 30) == bytes {
                    report.hookAction = "up to date"
                } else {
                    // Write beside it and rename, so libvirtd never runs a half-written hook.
                    let tmp = hooksDir + "/.prezero.new"
                    try? Files.removePath(tmp)
                    try Files.writeBytes(tmp, bytes, mode: 0o755)
                    try Files.renamePath(tmp, target)
                    report.hookAction = "installed"
                    report.restartLibvirtd = true
                }
                try Files.makeDirectories(configDir, mode: 0o755)
                for (name, text) in [("prezerod.yaml", Self.defaultConfig), ("hook.conf", Self.defaultHookConf)] {
                    let path = configDir + "/" + name
                    if Files.status(followingPath: path) != nil {
                        report.configs[path] = "kept"
                    } else {
                        try Files.writeText(path, text, mode: 0o644)
                        report.configs[path] = "created"
                    }
                }
            }
        } catch let e as CLIError {
            try guarded { throw e }
        } catch {
            try guarded { throw CLIError("install: \(error)") }
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
