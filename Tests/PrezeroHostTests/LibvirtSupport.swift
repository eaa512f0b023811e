import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroLibvirtModel
import PrezeroQemuModel
import PrezeroSys
import Testing

/// A real libvirtd + virtlogd set up for prezero on a test pool, and undone after:
/// qemu.conf restored byte for byte, the hook removed, the daemons this fixture
/// started stopped by PID (a libvirtd that was already running is restarted
/// without the hook), and every test domain destroyed and undefined.
final class LibvirtHost {
    static let qemuConf = "/etc/libvirt/qemu.conf"
    static let hooksDir = "/etc/libvirt/hooks/qemu.d"
    let pool: TestPool
    let hookPath: String
    let savedQemuConf: Data?
    var startedVirtlogd: Int32?
    var startedLibvirtd = false
    let libvirtdWasRunning: Bool
    /// The hook directories this host did not have: removed again, once empty, on close.
    let missingHookDirs: [String]
    var domains: [String] = []
    var backingDir: String { pool.mount + "/libvirt-ram" }

    init(pool: TestPool, hook: Bool = true, hugetlbfsMount: String? = nil) throws {
        self.pool = pool
        hookPath = "\(LibvirtHost.hooksDir)/prezero-test-\(getpid())"
        savedQemuConf = FileManager.default.contents(atPath: LibvirtHost.qemuConf)
        missingHookDirs = ["/etc/libvirt/hooks", LibvirtHost.hooksDir].filter { !FileManager.default.fileExists(atPath: $0) }
        libvirtdWasRunning = LibvirtHost.pid("/run/libvirtd.pid") != nil
        try FileManager.default.createDirectory(atPath: backingDir, withIntermediateDirectories: true)
        var conf = String(decoding: savedQemuConf ?? Data(), as: UTF8.self)
        conf += "\n# prezero test \(getpid())\nmemory_backing_dir = \"\(backingDir)\"\n"
        if let m = hugetlbfsMount { conf += "hugetlbfs_mount = \"\(m)\"\n" }
        try conf.write(toFile: LibvirtHost.qemuConf, atomically: true, encoding: .utf8)
        if hook { try installHook() }
        try restartLibvirtd()
    }

    /// The hook as libvirtd runs it: a wrapper that points prezero-hook at the test's socket.
    /// - Parameter startBeginDelay: seconds the wrapper waits at `start begin` before the hook
    ///   runs, after touching `startBeginMarker`: a window in which to act during that call.
    func installHook(timeoutMs: Int = 5000, failClosed: Bool = false, startBeginDelay: Double = 0) throws {
        try FileManager.default.createDirectory(atPath: LibvirtHost.hooksDir, withIntermediateDirectories: true)
        let conf = pool.base + "/hook.conf"
        try "socket = \(pool.socket)\ntimeout_ms = \(timeoutMs)\nfail_closed = \(failClosed)\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let delay = startBeginDelay > 0
            ? "if [ \"$2 $3\" = \"start begin\" ]; then touch \(startBeginMarker); sleep \(startBeginDelay); fi\n" : ""
        try "#!/bin/sh\n\(delay)PREZERO_HOOK_CONF=\(conf) exec \(Binaries.dir)/prezero-hook \"$@\"\n"
            .write(toFile: hookPath, atomically: true, encoding: .utf8)
        chmod(hookPath, 0o755)
    }

    var startBeginMarker: String { pool.base + "/start-begin.marker" }

    func removeHook() { try? FileManager.default.removeItem(atPath: hookPath) }

    static func pid(_ file: String) -> Int32? {
        guard let t = try? String(contentsOfFile: file, encoding: .utf8), let p = Int32(t.trimmingCharacters(in: .whitespacesAndNewlines)),
              alive(p) else { return nil }
        return p
    }

    /// Running, and not a zombie (without systemd nobody may reap an orphan).
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// Stops a daemon by PID: SIGTERM, then SIGKILL if it has not exited after `grace` seconds.
    static func stop(_ pid: Int32, grace: Double = 10) {
        kill(pid, SIGTERM)
        if (try? waitFor("\(pid) to exit", timeout: grace) { !alive(pid) }) == nil {
            kill(pid, SIGKILL)
            try? waitFor("\(pid) to die", timeout: 5) { !alive(pid) }
        }
    }

    /// Starts a self-daemonizing program (`-d`) and waits for its foreground process.
    static func spawnDaemon(_ args: [String]) throws {
        let status = try Child(args).wait(timeout: 60)
        guard status == 0 else { throw TestFailure("\(args.joined(separator: " ")) exited with status \(status)") }
    }

    /// libvirtd finds hooks only when it starts: stop it by PID, wait, start it again.
    func restartLibvirtd() throws {
        if LibvirtHost.pid("/run/virtlogd.pid") == nil {
            try LibvirtHost.spawnDaemon(["/usr/sbin/virtlogd", "-d"])
            try waitFor("virtlogd") { LibvirtHost.pid("/run/virtlogd.pid") != nil }
            startedVirtlogd = LibvirtHost.pid("/run/virtlogd.pid")
        }
        if let p = LibvirtHost.pid("/run/libvirtd.pid") { LibvirtHost.stop(p) }
        try LibvirtHost.spawnDaemon(["/usr/sbin/libvirtd", "-d"])
        startedLibvirtd = true
        try waitFor("libvirtd to answer", timeout: 30) { (try? run(["virsh", "-c", "qemu:///system", "version"]))?.status == 0 }
    }

    @discardableResult
    func virsh(_ args: String...) throws -> (status: Int32, out: String, err: String) {
        try run(["virsh", "-c", "qemu:///system"] + args)
    }

    /// The accelerator libvirt's QEMU gets here, decided once per test process
    /// (`make test` gives /dev/kvm Debian's udev mode first, scripts/kvm.sh).
    static let accel = HostAccelerator.forLibvirt(qemuConf: qemuConf)

    /// Defines a domain with no disk (SeaBIOS idling is enough to start it): type kvm
    /// where QEMU can use KVM, else qemu (TCG).
    func define(name: String, uuid: String = UUID().uuidString.lowercased(), memoryMiB: Int, backing: String, cells: String = "",
                numatune: String = "", vcpus: Int = 1, extra: String = "") throws -> String {
        let xml = """
            <domain type='\(LibvirtHost.accel.domainType)' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>\(name.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;"))</name>
              <uuid>\(uuid)</uuid>
              <memory unit='MiB'>\(memoryMiB)</memory>
              <memoryBacking>\(backing)</memoryBacking>
              <vcpu placement='static'>\(vcpus)</vcpu>
              \(numatune)
              <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
              <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model>\(cells)</cpu>
              <clock offset='utc'/>
              <on_poweroff>destroy</on_poweroff>
              <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
              \(extra)
            </domain>
            """
        return try defineXML(xml)
    }

    /// Defines a domain from its whole XML; it is destroyed and undefined by `close()`.
    func defineXML(_ xml: String) throws -> String {
        let uuid = try DomainXML.parse(xml).uuid
        let file = pool.base + "/\(uuid).xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try virsh("define", file)
        guard r.status == 0 else { throw TestFailure("virsh define: \(r.err)") }
        domains.append(uuid)
        return uuid
    }

    static let eligible = DomainRewrite.eligibleBacking

    /// PID of the QEMU running a domain.
    func qemuPID(_ uuid: String) throws -> Int32 {
        let name = try virsh("domname", uuid).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let p = try String(contentsOfFile: "/run/libvirt/qemu/\(name).pid", encoding: .utf8)
        return Int32(p.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    /// Inodes of the hugetlbfs files a process maps, from /proc/PID/maps.
    func mappedInodes(_ pid: Int32) -> Set<UInt64> {
        let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
        return Set(maps.split(separator: "\n").filter { $0.contains(backingDir) }.compactMap { line in
            UInt64(line.split(separator: " ", omittingEmptySubsequences: true)[4])
        })
    }

    func close() {
        for d in domains {
            _ = try? virsh("destroy", d)
            _ = try? virsh("undefine", d)
        }
        removeHook()
        for d in missingHookDirs.reversed() where (try? FileManager.default.contentsOfDirectory(atPath: d))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: d)
        }
        if let saved = savedQemuConf { _ = FileManager.default.createFile(atPath: LibvirtHost.qemuConf, contents: saved) }
        if let p = LibvirtHost.pid("/run/libvirtd.pid") { LibvirtHost.stop(p) }
        if libvirtdWasRunning { try? LibvirtHost.spawnDaemon(["/usr/sbin/libvirtd", "-d"]) }
        if let p = startedVirtlogd { LibvirtHost.stop(p) }
    }

    deinit { close() }

    /// A test run that died leaves its hook and its qemu.conf lines behind: remove
    /// both for every test process that is gone.
    static func reapStale() {
        for f in (try? FileManager.default.contentsOfDirectory(atPath: hooksDir)) ?? [] where f.hasPrefix("prezero-test-") {
            if let pid = Int32(f.dropFirst("prezero-test-".count)), !alive(pid) {
                try? FileManager.default.removeItem(atPath: "\(hooksDir)/\(f)")
            }
        }
        guard let conf = try? String(contentsOfFile: qemuConf, encoding: .utf8) else { return }
        var lines = conf.components(separatedBy: "\n")
        var i = 0
        var changed = false
        while i < lines.count {
            if lines[i].hasPrefix("# prezero test "), let pid = Int32(lines[i].dropFirst("# prezero test ".count)), !alive(pid) {
                var n = 1
                while i + n < lines.count, lines[i + n].hasPrefix("memory_backing_dir") || lines[i + n].hasPrefix("hugetlbfs_mount") { n += 1 }
                lines.removeSubrange(i..<(i + n))
                if i > 0 && lines[i - 1].isEmpty { lines.remove(at: i - 1); i -= 1 }
                changed = true
            } else {
                i += 1
            }
        }
        if changed { try? lines.joined(separator: "\n").write(toFile: qemuConf, atomically: true, encoding: .utf8) }
    }
}
