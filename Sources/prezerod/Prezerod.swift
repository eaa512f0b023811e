import ArgumentParser
import Glibc
import Logging
import PrezeroConfigYAML
import PrezeroCore
import PrezeroHookHandler
import PrezeroHost
import PrezeroMetrics
import PrezeroPool
import PrezeroProtocol
import PrezeroSys
import ServiceLifecycle

@main
struct Prezerod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prezerod",
        abstract: "Keeps pools of pre-zeroed hugetlbfs files on each NUMA node and hands them to VMs.",
        discussion: """
            Runs one pinned worker per (mount, node) that fills pool files with fallocate and
            takes back released ones (their pages to the kernel), and serves the control socket that prezero and prezero-hook use.
            With no --config it runs on embedded defaults (see the README's config reference).
            SIGTERM or SIGINT stops it at the next chunk boundary; its state is the pool directories.
            """)

    @Option(name: .long, help: "YAML config file (default: /etc/prezero/prezerod.yaml if it exists, else built-in defaults).")
    var config: String?

    @Option(name: .long, help: "Control socket path (overrides the config's socket).")
    var socket: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Flag(name: .long, help: "Check the config and the host, print what would run, and exit.")
    var checkConfig = false

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "prezerod")
        var cfg = try loadConfig()
        if let socket { cfg.socket = socket }
        // Its holder scan reads /proc: from another PID namespace it would see other processes than the host's.
        let own: String
        switch Namespaces.pidLink("self") {
        case .success(let l): own = l
        case .failure(let e): throw Failure("cannot read /proc/self/ns/pid (\(e)); prezerod needs the host's /proc")
        }
        if let why = PIDNamespace.problem(own: own, pid1: try? Namespaces.pidLink("1").get()) { throw Failure(why) }
        let mounts: [PoolMount]
        do {
            let found = try HostDiscovery.poolMounts(cfg)
            mounts = found.mounts
            if let chosen = found.chosen { logger.notice("\(chosen)") }
        } catch {
            throw Failure("\(error)")
        }
        for m in mounts {
            logger.info("pool mount \(m.path): \(ByteSize.format(m.pageSize)) pages, nodes \(m.nodes)")
        }
        if checkConfig {
            print("config ok: \(mounts.count) pool mount(s), socket \(cfg.socket)")
            return
        }
        guard Processes.userID() == 0 else { throw Failure("prezerod must run as root (it chowns files and binds memory to nodes)") }
        let otherCallers = !cfg.allowedUids.isEmpty || !cfg.allowedGids.isEmpty
        let lacking = DaemonCapabilities.missing(effective: DaemonCapabilities.effective(status: Files.readText("/proc/self/status") ?? "") ?? 0,
                                                 otherCallers: otherCallers)
        guard lacking.isEmpty else {
            throw Failure("prezerod lacks \(lacking.map(\.name).joined(separator: ", ")) (\(lacking.map(\.why).joined(separator: "; ")));"
                          + " keep \(DaemonCapabilities.needed(otherCallers: otherCallers).map(\.name).joined(separator: " ")) in its CapabilityBoundingSet=")
        }
        guard Files.leasesEnabled else {
            throw Failure("file leases are switched off (/proc/sys/fs/leases-enable is 0), and prezerod needs one to prove that nothing still has a released file open before its pages go back; switch them on: sysctl -w fs.leases-enable=1")
        }
        Signals.ignoreLeaseBreaks()
        let daemon = try PoolDaemon(config: cfg, mounts: mounts, logger: logger, hooks: LibvirtHookHandler())
        let server = try ControlServer(daemon: daemon, logger: logger)
        try daemon.start()
        // A service group stops its services last first: the control server stops taking
        // requests and answers those it holds before the metrics and the pool stop.
        var services: [any Service] = [PoolService(daemon: daemon)]
        if let path = cfg.metricsTextfile {
            services.append(MetricsTextfileService(daemon: daemon, path: path, intervalMs: cfg.metricsIntervalMs, logger: logger))
        }
        services.append(ControlService(server: server))
        let group = ServiceGroup(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
    }

    func loadConfig() throws -> Config {
        let path = config ?? "/etc/prezero/prezerod.yaml"
        guard let text = Files.readText(path) else {
            if config != nil { throw Failure("cannot read config \(path)") }
            return Config()
        }
        do {
            return try Config.parse(yaml: text)
        } catch {
            throw Failure("config \(path): \(error.message)")
        }
    }
}

/// Runs the pool (started before the group) until graceful shutdown, then stops it at a chunk boundary.
struct PoolService: Service {
    let daemon: PoolDaemon

    func run() async throws {
        try? await gracefulShutdown()
        daemon.stop()
    }
}

/// Serves the control socket until graceful shutdown, then stops taking requests and
/// answers the ones being handled.
struct ControlService: Service {
    let server: ControlServer

    func run() async throws {
        try server.start()
        try? await gracefulShutdown()
        server.stop()
    }
}

/// A one-line error for the terminal; exit status 1.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Writes the metrics for node_exporter's textfile collector every `metrics_interval_ms`:
/// to a temporary file beside it, renamed over it, so that a scrape never reads half a file.
struct MetricsTextfileService: Service {
    let daemon: PoolDaemon
    let path: String
    let intervalMs: Int
    let logger: Logger

    func run() async throws {
        let tmp = path + ".tmp"
        var failing = false
        while !Task.isShuttingDownGracefully {
            do {
                try Files.writeText(tmp, PrometheusText.render(daemon.status()), mode: 0o644)
                try Files.renamePath(tmp, path)
                if failing { logger.info("metrics: writing \(path) again") }
                failing = false
            } catch {
                if !failing { logger.error("metrics: cannot write \(path): \(error); retrying every \(intervalMs) ms") }
                failing = true
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(intervalMs)) }
        }
        try? Files.removePath(path)
    }
}
