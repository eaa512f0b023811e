import ArgumentParser
import Foundation
import PrezeroClient
import PrezeroCore
import PrezeroHookHandler
import PrezeroLibvirtModel
import PrezeroLibvirt
import PrezeroHost
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

struct Libvirt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make libvirt domains eligible for pre-zeroed memory, and check that they are.",
        subcommands: [LibvirtEnable.self, LibvirtDoctor.self, LibvirtPlan.self])
}

/// `--connect`, shared by the libvirt commands.
struct LibvirtOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .long], help: "libvirt connection URI.")
    var connect = "qemu:///system"
    @Option(name: .long, help: "libvirt's qemu.conf, where memory_backing_dir is set.")
    var qemuConf = "/etc/libvirt/qemu.conf"
    @Option(name: .long, help: "libvirt's qemu hook directory.")
    var hooksDir = "/etc/libvirt/hooks/qemu.d"

    func open() throws -> LibvirtConnection {
        do {
            return try LibvirtConnection(uri: connect)
        } catch {
            throw CLIError(error.description, code: 3)
        }
    }
}

/// A libvirt failure as one line and exit status 1.
func libvirtCall<T>(_ body: () throws(LibvirtError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw CLIError(error.description)
    }
}

struct LibvirtEnable: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable",
        abstract: "Rewrite a defined domain's <memoryBacking> to the form prezero hands pre-zeroed files to.",
        discussion: """
            The eligible form is <source type='file'/> and <access mode='shared'/> with no <hugepages>; \
            guest cells mapped private are switched to shared. Everything else in the definition is kept \
            byte for byte. A running domain gets the new form at its next start. qemu.conf must point \
            memory_backing_dir at a pool mount: `prezero libvirt doctor DOMAIN` checks it.
            """)

    @Argument(help: "The domain's name or UUID.")
    var domain: String
    @Flag(name: .long, help: "Print the change as a unified diff and change nothing.")
    var dryRun = false
    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false
    @OptionGroup var libvirt: LibvirtOptions

    struct Report: Codable {
        var domain: String
        var changes: [String]
        var diff: String
        var applied: Bool
        var active: Bool
    }

    func run() throws {
        try guarded {
            let conn = try libvirt.open()
            let d = try libvirtCall { () throws(LibvirtError) in try conn.domain(domain) }
            let xml = try libvirtCall { () throws(LibvirtError) in try conn.xml(domain) }
            let r: DomainRewrite.Result
            do {
                r = try DomainRewrite.enable(xml)
            } catch {
                throw CLIError("\(d.name): \(error)")
            }
            let diff = LineDiff.unified(xml, r.xml, from: "\(d.name) (defined)", to: "\(d.name) (eligible)")
            let apply = !dryRun && !r.changes.isEmpty
            if apply { try libvirtCall { () throws(LibvirtError) in try conn.define(r.xml) } }
            if json {
                printJSON(Report(domain: d.name, changes: r.changes, diff: diff, applied: apply, active: d.active))
                return
            }
            guard !r.changes.isEmpty else {
                print("\(d.name) is already in the eligible form; nothing changed")
                return
            }
            if dryRun {
                print(diff, terminator: "")
                return
            }
            print("\(d.name): redefined in the eligible form")
            for c in r.changes { print("  \(c)") }
            if d.active { print("\(d.name) is running: the new form applies from its next start") }
        }
    }
}

struct LibvirtDoctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the libvirt side: memory_backing_dir, the hook, libvirtd, and each domain's eligibility.",
        discussion: """
            Checks that qemu.conf's memory_backing_dir is on one of prezerod's pool mounts, that the hook \
            is installed and executable, that libvirtd started after the hook was installed (it finds \
            hooks only when it starts), that /dev/kvm, where it works, opens for qemu.conf's user \
            (else libvirt re-probes QEMU at every start), and, for DOMAIN or every defined domain, whether it is eligible \
            for a hand-over and whether its memory is a whole number of pages. Exits 4 when a check fails.
            """)

    @Argument(help: "Check only this domain (name or UUID).")
    var domain: String?
    @Flag(name: .long, help: "Print the checks as JSON.")
    var json = false
    @OptionGroup var libvirt: LibvirtOptions
    @OptionGroup var connection: Connection

    func run() throws {
        try guarded {
            var checks: [Doctor.Check] = []
            func check(_ name: String, _ ok: Bool, _ detail: String) {
                checks.append(Doctor.Check(name: name, ok: ok, detail: detail))
            }
            // Pool mounts: prezerod's own list; the host's hugetlbfs mounts if it cannot be reached.
            var poolMounts: [HookHost.Mount] = []
            do {
                let s = try connection.client.status()
                poolMounts = s.mounts.map { HookHost.Mount(path: $0.path, pageSize: $0.pageSize) }
                check("prezerod", true, "pid \(s.pid); pool mounts \(poolMounts.map(\.path).joined(separator: ", "))")
            } catch {
                check("prezerod", false, (error as? ControlError)?.message ?? "\(error)")
            }
            let conf: QemuConf, host: HookHost
            do {
                (conf, host) = try HostDiscovery.hookHost(qemuConf: libvirt.qemuConf, domain: nil, poolMounts: poolMounts)
            } catch {
                check("qemu.conf", false, "\(error); libvirtd refuses a qemu.conf it cannot parse: fix it and restart libvirtd")
                try Doctor.report(checks, json: json)
                return
            }
            switch (conf.memoryBackingDir, host.backingPoolMount) {
            case (nil, _):
                check("memory_backing_dir", false, "not set in \(libvirt.qemuConf); add memory_backing_dir = \"<pool mount>/libvirt-ram\" and restart libvirtd")
            case (let dir?, nil):
                check("memory_backing_dir", false, "\(dir) is not on a pool mount (\(poolMounts.isEmpty ? "none known" : poolMounts.map(\.path).joined(separator: ", "))); point it at a directory on one and restart libvirtd")
            case (let dir?, let m?):
                check("memory_backing_dir", true, "\(dir) on pool mount \(m.path) (\(ByteSize.format(m.pageSize)) pages)")
            }
            let hookPath = libvirt.hooksDir + "/prezero"
            let hook = Files.status(followingPath: hookPath)
            let hookOK = hook.map { $0.isRegular && $0.permissions & 0o111 != 0 } ?? false
            check("hook", hookOK, hook == nil ? "\(hookPath) is missing; run `prezero install`, then restart libvirtd"
                : hookOK ? "\(hookPath) installed" : "\(hookPath) is not an executable file; run `prezero install`")
            let accel = HostAccelerator.forLibvirt(qemuConf: libvirt.qemuConf)
            if accel.reprobeTrap {
                check("kvm", false, "\(accel.reason): libvirt re-probes QEMU's capabilities at every start (about 4 s each here) and runs guests under TCG; fix: \(accel.fix ?? AccelDecision.udevFix) (what Debian's udev rule does), or run udev")
            } else {
                check("kvm", true, "accel: \(accel.accel.rawValue) (\(accel.reason))")
            }
            let started = libvirtdStart()
            switch (started, hook) {
            case (nil, _):
                check("libvirtd", false, "libvirtd is not running; start it")
            // /proc/stat's btime is whole seconds: allow one.
            case (let t?, let h?) where t + 1 < h.changedAt:
                check("libvirtd", false, "started before the hook was installed, so it does not run it; restart libvirtd")
            case (_?, _):
                check("libvirtd", true, "running" + (hook == nil ? "" : ", started after the hook was installed"))
            }
            if started != nil {
                let conn = try libvirt.open()
                let names = try libvirtCall { () throws(LibvirtError) in
                    if let domain { [try conn.domain(domain)] } else { try conn.domains() }
                }
                if names.isEmpty { check("domains", true, "none defined") }
                for d in names {
                    let xml = try libvirtCall { () throws(LibvirtError) in try conn.xml(d.name) }
                    let (ok, detail) = Self.eligibility(xml, host: host)
                    check("domain \(d.name)", ok, detail)
                }
            }
            try Doctor.report(checks, json: json)
        }
    }

    /// Whether a domain would be handed over, and why not if not.
    static func eligibility(_ xml: String, host: HookHost) -> (Bool, String) {
        let plan: DomainPlan, d: DomainMemory
        do {
            d = try DomainXML.parse(xml)
            plan = try HookPlanner.plan(d, host: host)
        } catch let e as DomainXMLError {
            return (false, e.description)
        } catch {
            return (false, "\(error)")
        }
        let handed = plan.handOvers
        let rest = plan.backends.filter { $0.decision != .handOver }.map { "\($0.backend.id ?? "?"): \($0.decision.rawValue), \($0.reason)" }
        let tail = rest.isEmpty ? "" : "; " + rest.joined(separator: "; ")
        if !handed.isEmpty {
            return (true, "eligible: \(handed.map { "\($0.backend.alias ?? "?") \(ByteSize.format($0.backend.bytes))" }.joined(separator: ", ")) in \(ByteSize.format(handed[0].pageSize)) pages\(tail)")
        }
        return (false, rest.joined(separator: "; ") + "; `prezero libvirt enable \(d.name)` rewrites it, `prezero libvirt plan \(d.name)` shows every backend")
    }

    /// When the running libvirtd started (seconds since the epoch), nil when none runs.
    func libvirtdStart() -> Double? {
        let procStat = Files.readText("/proc/stat") ?? ""
        for pid in Files.list(path: "/proc") where pid.allSatisfy(\.isNumber) {
            guard Files.readText("/proc/\(pid)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) == "libvirtd",
                  let stat = Files.readText("/proc/\(pid)/stat"), !stat.contains(") Z ") else { continue }
            return ProcParsers.processStart(stat: stat, procStat: procStat, ticksPerSecond: clockTicksPerSecond())
        }
        return nil
    }
}
