import Foundation
import PrezeroClient
import PrezeroProtocol
import PrezeroSys

/// A private hugetlbfs mount under /tmp and a prezerod running on it, with its own socket,
/// state directory and log, so that a test, a bench or the demo never touches a host's
/// real configuration. Everything is undone by `close()`: the daemon drained and stopped by
/// PID, the mount unmounted, the directory removed. A run that died is cleaned up by the
/// next one (`reapStale`).
public final class LabPool {
    /// Every lab directory is `/tmp/prezero-lab-PID-N`: PID is the process that made it.
    public static let prefix = "prezero-lab-"
    public let base: String
    public let mount: String
    public let pageSize: UInt64
    public let socket: String
    public let configPath: String
    /// The directory holding prezerod (and the CLI and hook beside it).
    public let bin: String
    public private(set) var process: ChildProcess?
    public var logPath: String { base + "/prezerod.log" }
    public var prezerod: String { bin + "/prezerod" }

    /// Makes the directory and the mount and writes prezerod's config; `start()` starts it.
    /// - Parameters:
    ///   - config: YAML lines added to the config (`{mount}` and `{base}` are replaced);
    ///     socket and state_dir are set here.
    ///   - mountConfig: YAML lines under the mount's entry (target, file_size, ...).
    ///   - mountOptions: extra hugetlbfs options, e.g. `size=32M` to cap what the pool can hold.
    ///   - listMount: false leaves `mounts:` out, for prezerod to find its mounts itself.
    public init(bin: String, pageSize: UInt64 = 2 << 20, config: String = "", mountConfig: String = "",
                mountOptions: String = "", listMount: Bool = true) throws {
        LabPool.reapStale()
        base = "/tmp/\(LabPool.prefix)\(Processes.current())-\(UInt32.random(in: 0...UInt32.max))"
        mount = base + "/hugepages"
        self.pageSize = pageSize
        self.bin = bin
        socket = base + "/prezerod.sock"
        configPath = base + "/prezerod.yaml"
        // World-traversable: QEMU runs as libvirt's user and must reach the mount.
        try Files.makeDirectories(mount, mode: 0o755)
        do {
            try Mounts.mountHugetlbfs(at: mount, pageSize: pageSize, options: mountOptions)
        } catch {
            Files.removeTree(base)
            throw LabError("cannot mount hugetlbfs of \(ByteSize.format(pageSize)) pages at \(mount): \(error); does the kernel have them (ls /sys/kernel/mm/hugepages)?")
        }
        let config = config.replacingOccurrences(of: "{mount}", with: mount).replacingOccurrences(of: "{base}", with: base)
        let entry = mountConfig.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let mounts = listMount ? "mounts:\n  - path: \(mount)\n\(entry)\n" : ""
        try Files.writeText(configPath, "socket: \(socket)\nstate_dir: \(base)/state\n\(config)\n\(mounts)", mode: 0o644)
    }

    /// Starts prezerod (under `wrapper`, e.g. `setpriv` with a unit's capabilities) and waits
    /// until it answers on its socket.
    public func start(wrapper: [String] = [], logLevel: String = "debug") throws {
        let p = try ChildProcess(wrapper + [prezerod, "--config", configPath, "--log-level", logLevel], stdout: logPath, stderr: logPath)
        process = p
        try Files.writeText(base + "/prezerod.pid", "\(p.pid)", mode: 0o644)
        try LabCommand.waitFor("prezerod to listen on \(socket)", timeout: 20) {
            guard p.isRunning else { throw LabError("prezerod exited: \(log().suffix(2000))") }
            return (try? client.status()) != nil
        }
    }

    /// Graceful stop (SIGTERM) by PID, waiting for the exit.
    public func stop() {
        guard let p = process else { return }
        p.signal(SIGTERM)
        _ = try? p.wait(timeout: 30)
        process = nil
    }

    /// kill -9, as a crash would.
    public func crash() {
        guard let p = process else { return }
        p.signal(SIGKILL)
        _ = try? p.wait(timeout: 10)
        process = nil
    }

    public func log() -> String { Files.readText(logPath) ?? "" }

    public var client: ControlClient { ControlClient(socket: socket, timeout: 20) }

    /// Waits until the pool on this mount is settled (`LabPool.settle`).
    public func settle(timeout: Double = 300) throws { try LabPool.settle(client, mount: mount, timeout: timeout) }

    /// Waits for the pool on `mount` to be back at its target with nothing leased or filling,
    /// and for a stock start's make-room hold to be over, so that nothing is timed or checked
    /// against the pool's own work.
    public static func settle(_ client: ControlClient, mount: String, timeout: Double = 300) throws {
        try LabCommand.waitFor("the pool on \(mount) to settle (clean, nothing leased or filling); see `prezero status`", timeout: timeout) {
            let nodes = try client.status().mounts.first { $0.path == mount }?.nodes ?? []
            let busy = nodes.reduce(UInt64(0)) { $0 + $1.fillingBytes + $1.leasedBytes }
            return busy == 0 && nodes.allSatisfy {
                $0.cleanBytes >= min($0.targetBytes, $0.totalBytes - $0.minFreeBytes) && $0.keptForLaunchBytes == 0
            }
        }
    }

    public func close() {
        if process != nil {
            _ = try? client.drain()
            stop()
        }
        // Whatever is left in the mount goes back to the kernel with the unmount.
        try? Mounts.unmount(mount)
        Files.removeTree(base)
    }

    deinit { close() }

    /// A run that died leaves its prezerod and mount behind: stop that daemon by its recorded
    /// PID and unmount, for every lab whose process is gone; then libvirt's leftovers.
    public static func reapStale() {
        for d in Files.list(path: "/tmp") where d.hasPrefix(prefix) {
            let parts = d.dropFirst(prefix.count).split(separator: "-")
            guard parts.count == 2, let owner = Int32(parts[0]), !Daemons.alive(owner) else { continue }
            let base = "/tmp/" + d
            if let pid = Daemons.pid(file: base + "/prezerod.pid") {
                Processes.signal(pid, SIGKILL)
                try? LabCommand.waitFor("stale prezerod \(pid) to exit", timeout: 5) { !Daemons.alive(pid) }
            }
            try? Mounts.unmount(base + "/hugepages")
            Files.removeTree(base)
        }
        LabLibvirt.reapStale()
    }
}
