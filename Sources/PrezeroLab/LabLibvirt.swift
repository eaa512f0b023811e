import Foundation
import PrezeroClient
import PrezeroLibvirtModel
import PrezeroQemuModel
import PrezeroSys

/// A real libvirtd + virtlogd set up for prezero on a lab pool, and undone after: qemu.conf
/// restored byte for byte, the hook removed, /etc/prezero/hook.conf put back, the daemons
/// this started stopped by PID (a libvirtd that was already running is restarted without
/// the hook), and every domain defined through it destroyed and undefined.
public final class LabLibvirt {
    public static let qemuConf = "/etc/libvirt/qemu.conf"
    public static let hooksDir = "/etc/libvirt/hooks/qemu.d"
    public static let hookConf = "/etc/prezero/hook.conf"
    /// The lines appended to qemu.conf start with this and the PID of the run.
    static let marker = "# prezero lab "
    /// A private hook is `qemu.d/prezero-lab-PID`.
    static let privateHookPrefix = "prezero-lab-"

    /// The root of a second libvirt stack (`scripts/stack.sh run` sets PREZERO_LIBVIRT_ROOT):
    /// libvirtd and virtlogd are started inside it, by chroot, and their PID files are its own.
    /// Every other path is the usual one, as that script puts the root's libvirt over the host's.
    public static let stackRoot = Environment.value("PREZERO_LIBVIRT_ROOT").flatMap { $0.isEmpty ? nil : $0 }
    static let libvirtdPidFile = (stackRoot ?? "") + "/run/libvirtd.pid"
    static let virtlogdPidFile = (stackRoot ?? "") + "/run/virtlogd.pid"
    /// A daemon of the stack, started inside its root when there is one, with the root's own PATH
    /// (the one the script gives the tests leads to a QEMU wrapper meant for the host side).
    static func daemon(_ path: String) -> [String] {
        stackRoot.map { ["chroot", $0, "/usr/bin/env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", path, "-d"] } ?? [path, "-d"]
    }

    /// Which prezero-hook libvirtd runs.
    public enum Hook: String, Sendable, CaseIterable {
        /// A wrapper beside a host's own hooks, pointing the lab's prezero-hook at the lab's socket.
        case `private`
        /// The binary itself as `qemu.d/prezero`, configured by /etc/prezero/hook.conf, as
        /// `prezero install` lays it out: what is timed is what a host runs.
        case prezero
        /// The hook a package installed, used as it is, pointed at the lab by /etc/prezero/hook.conf.
        case installed
        /// No hook.
        case none
    }

    public let pool: LabPool
    public let hook: Hook
    public private(set) var hookPath: String?
    let savedQemuConf: String?
    let savedHookConf: String?
    var wroteHookConf = false
    var startedVirtlogd: Int32?
    let libvirtdWasRunning: Bool
    /// The hook directories this host did not have: removed again, once empty, on close.
    let missingDirs: [String]
    public var domains: [String] = []
    public var backingDir: String { pool.mount + "/libvirt-ram" }

    /// Points libvirt at the pool (`memory_backing_dir`, and `hugetlbfs_mount` when given),
    /// installs `hook` and (re)starts libvirtd, which finds hooks only when it starts.
    public init(pool: LabPool, hook: Hook = .private, hugetlbfsMount: String? = nil) throws {
        LabLibvirt.reapStale()
        self.pool = pool
        self.hook = hook
        switch hook {
        case .installed:
            guard Files.status(followingPath: LabLibvirt.hooksDir + "/prezero") != nil else {
                throw LabError("no installed hook at \(LabLibvirt.hooksDir)/prezero; install the package first")
            }
        case .prezero:
            guard Files.status(followingPath: LabLibvirt.hooksDir + "/prezero") == nil else {
                throw LabError("\(LabLibvirt.hooksDir)/prezero exists already: this host has prezero installed; run the command against its own prezerod instead")
            }
        case .private, .none: break
        }
        savedQemuConf = Files.readText(LabLibvirt.qemuConf)
        savedHookConf = Files.readText(LabLibvirt.hookConf)
        missingDirs = ["/etc/libvirt/hooks", LabLibvirt.hooksDir, "/etc/prezero"].filter { Files.status(followingPath: $0) == nil }
        libvirtdWasRunning = Daemons.pid(file: LabLibvirt.libvirtdPidFile) != nil
        try Files.makeDirectories(backingDir, mode: 0o755)
        var conf = (savedQemuConf ?? "") + "\n\(LabLibvirt.marker)\(Processes.current())\nmemory_backing_dir = \"\(backingDir)\"\n"
        if let m = hugetlbfsMount { conf += "hugetlbfs_mount = \"\(m)\"\n" }
        try Files.writeText(LabLibvirt.qemuConf, conf, mode: 0o644)
        do {
            if hook != .none { try installHook() }
            try restartLibvirtd()
        } catch {
            close()
            throw error
        }
    }

    /// The one hook.conf a lab writes: the lab's socket and the hook's timeout and failure mode.
    func hookConfText(timeoutMs: Int, failClosed: Bool) -> String {
        "socket = \(pool.socket)\ntimeout_ms = \(timeoutMs)\nfail_closed = \(failClosed)\n"
    }

    /// Installs (or rewrites) the hook as `hook` says.
    /// - Parameter startBeginDelay: seconds a private hook waits at `start begin` before it
    ///   runs, after touching `startBeginMarker`: a window in which a test acts during that call.
    public func installHook(timeoutMs: Int = 5000, failClosed: Bool = false, startBeginDelay: Double = 0) throws {
        try Files.makeDirectories(LabLibvirt.hooksDir, mode: 0o755)
        switch hook {
        case .none:
            return
        case .private:
            let conf = pool.base + "/hook.conf"
            try Files.writeText(conf, hookConfText(timeoutMs: timeoutMs, failClosed: failClosed), mode: 0o644)
            let delay = startBeginDelay > 0
                ? "if [ \"$2 $3\" = \"start begin\" ]; then touch \(startBeginMarker); sleep \(startBeginDelay); fi\n" : ""
            let path = "\(LabLibvirt.hooksDir)/\(LabLibvirt.privateHookPrefix)\(Processes.current())"
            try Files.writeText(path, "#!/bin/sh\n\(delay)PREZERO_HOOK_CONF=\(conf) exec \(pool.bin)/prezero-hook \"$@\"\n", mode: 0o755)
            try Files.setGroupAndMode(path: path, gid: 0, mode: 0o755)
            hookPath = path
        case .prezero, .installed:
            try Files.makeDirectories("/etc/prezero", mode: 0o755)
            wroteHookConf = true
            try Files.writeText(LabLibvirt.hookConf, hookConfText(timeoutMs: timeoutMs, failClosed: failClosed), mode: 0o644)
            if hook == .prezero {
                let path = LabLibvirt.hooksDir + "/prezero"
                try LabCommand.check(["cp", pool.bin + "/prezero-hook", path])
                hookPath = path
            }
        }
    }

    public var startBeginMarker: String { pool.base + "/start-begin.marker" }

    /// Removes the hook this lab installed (never a package's).
    public func removeHook() {
        if let p = hookPath { try? Files.removePath(p) }
        hookPath = nil
    }

    /// libvirtd finds hooks only when it starts: stop it by PID, wait, start it again
    /// (and virtlogd first, where none runs).
    public func restartLibvirtd() throws {
        if Daemons.pid(file: LabLibvirt.virtlogdPidFile) == nil {
            startedVirtlogd = try Daemons.spawn(LabLibvirt.daemon("/usr/sbin/virtlogd"), pidFile: LabLibvirt.virtlogdPidFile)
        }
        if let p = Daemons.pid(file: LabLibvirt.libvirtdPidFile) { Daemons.stop(p) }
        try Daemons.spawn(LabLibvirt.daemon("/usr/sbin/libvirtd"), pidFile: LabLibvirt.libvirtdPidFile)
        try LabCommand.waitFor("libvirtd to answer", timeout: 30) { (try? virsh("version"))?.status == 0 }
    }

    @discardableResult
    public func virsh(_ args: String...) throws -> (status: Int32, out: String, err: String) {
        try LabCommand.run(["virsh", "-c", "qemu:///system"] + args)
    }

    /// The accelerator libvirt's QEMU gets here, decided once per process.
    public static let accel = HostAccelerator.forLibvirt(qemuConf: qemuConf)

    /// Defines `domain`; it is destroyed and undefined by `close()`. Returns its UUID.
    @discardableResult
    public func define(_ domain: GuestDomain) throws -> String {
        try defineXML(domain.xml)
    }

    /// Defines a domain from its whole XML; it is destroyed and undefined by `close()`.
    @discardableResult
    public func defineXML(_ xml: String) throws -> String {
        let uuid = try DomainXML.parse(xml).uuid
        let file = pool.base + "/\(uuid).xml"
        try Files.writeText(file, xml, mode: 0o644)
        let r = try virsh("define", file)
        guard r.status == 0 else { throw LabError("virsh define: \(r.err.trimmingCharacters(in: .whitespacesAndNewlines))") }
        domains.append(uuid)
        return uuid
    }

    /// The file naming the domains `prezero lab define` made in a lab, one a line, for the lab to
    /// destroy and undefine when it closes.
    public static func domainsFile(_ base: String) -> String { base + "/domains" }

    /// Defines `domain` for a lab run by another process (`prezero lab define` inside `prezero lab
    /// run`), recording it where that lab's `close()` finds it.
    public static func define(_ domain: GuestDomain, inLab base: String) throws {
        let file = base + "/\(domain.uuid).xml"
        try Files.writeText(file, domain.xml, mode: 0o644)
        let names = (Files.readText(domainsFile(base)) ?? "") + domain.uuid + "\n"
        try Files.writeText(domainsFile(base), names, mode: 0o644)
        let r = try LabCommand.run(["virsh", "-c", "qemu:///system", "define", file])
        guard r.status == 0 else { throw LabError("virsh define: \(r.err.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    /// PID of the QEMU running a domain.
    public func qemuPID(_ uuid: String) throws -> Int32 {
        let name = try virsh("domname", uuid).out.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let pid = Daemons.pid(file: "/run/libvirt/qemu/\(name).pid") else { throw LabError("\(name) has no running QEMU") }
        return pid
    }

    /// Inodes of the hugetlbfs files under the backing directory that a process maps (/proc/PID/maps).
    public func mappedInodes(_ pid: Int32) -> Set<UInt64> {
        let maps = Files.readText("/proc/\(pid)/maps") ?? ""
        return Set(maps.split(separator: "\n").filter { $0.contains(backingDir) }.compactMap { line in
            UInt64(line.split(separator: " ", omittingEmptySubsequences: true)[4])
        })
    }

    private var closed = false

    public func close() {
        guard !closed else { return }
        closed = true
        let recorded = (Files.readText(LabLibvirt.domainsFile(pool.base)) ?? "").split(separator: "\n").map(String.init)
        for d in domains + recorded {
            _ = try? virsh("destroy", d)
            _ = try? virsh("undefine", d)
        }
        domains = []
        // A bench killed inside the lab left the hook set aside: back first, then removed if ours.
        HookAside(hooksDir: LabLibvirt.hooksDir).restore()
        removeHook()
        if wroteHookConf {
            if let saved = savedHookConf { try? Files.writeText(LabLibvirt.hookConf, saved, mode: 0o644) } else { try? Files.removePath(LabLibvirt.hookConf) }
        }
        for d in missingDirs.reversed() where Files.list(path: d).isEmpty { Files.removeTree(d) }
        if let saved = savedQemuConf { try? Files.writeText(LabLibvirt.qemuConf, saved, mode: 0o644) }
        if let p = Daemons.pid(file: LabLibvirt.libvirtdPidFile) { Daemons.stop(p) }
        if libvirtdWasRunning { _ = try? Daemons.spawn(LabLibvirt.daemon("/usr/sbin/libvirtd"), pidFile: LabLibvirt.libvirtdPidFile) }
        if let p = startedVirtlogd { Daemons.stop(p) }
    }

    deinit { close() }

    /// A run that died leaves its hook and its qemu.conf lines behind: remove both for every
    /// run whose process is gone.
    public static func reapStale() {
        for f in Files.list(path: hooksDir) where f.hasPrefix(privateHookPrefix) {
            if let pid = Int32(f.dropFirst(privateHookPrefix.count)), !Daemons.alive(pid) {
                try? Files.removePath("\(hooksDir)/\(f)")
            }
        }
        guard let conf = Files.readText(qemuConf) else { return }
        var lines = conf.components(separatedBy: "\n")
        var i = 0
        var changed = false
        while i < lines.count {
            if lines[i].hasPrefix(marker), let pid = Int32(lines[i].dropFirst(marker.count)), !Daemons.alive(pid) {
                var n = 1
                while i + n < lines.count, lines[i + n].hasPrefix("memory_backing_dir") || lines[i + n].hasPrefix("hugetlbfs_mount") { n += 1 }
                lines.removeSubrange(i..<(i + n))
                if i > 0 && lines[i - 1].isEmpty { lines.remove(at: i - 1); i -= 1 }
                changed = true
            } else {
                i += 1
            }
        }
        if changed { try? Files.writeText(qemuConf, lines.joined(separator: "\n"), mode: 0o644) }
    }
}
