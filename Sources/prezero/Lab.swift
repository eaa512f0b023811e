import ArgumentParser
import Foundation
import PrezeroClient
import PrezeroLab
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

/// `prezero lab`: the private environment the demo, the benches and `make test` run in,
/// made and undone by PrezeroLab.
struct LabCommandGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Run a command in a private prezero environment on this host, and undo it after (for the demo, benches and tests).",
        discussion: """
            `prezero lab run` reserves huge pages, mounts a private hugetlbfs, starts a private prezerod \
            filled to its target, gives /dev/kvm udev's mode where libvirt's QEMU user needs it, points \
            libvirt at the pool and installs the hook; runs the command; then undoes every step, \
            whatever the command did (qemu.conf byte for byte, the daemons by PID). Needs root.
            """,
        subcommands: [LabRun.self, LabDefine.self, LabSettle.self, LabHugePages.self, LabRestore.self])
}

/// Fails unless root: every lab step changes the host.
private func requireRoot() throws {
    guard Processes.userID() == 0 else { throw CLIError("prezero lab changes the host (huge pages, mounts, libvirt): run it as root", code: 2) }
}

/// A lab step's failure as the CLI's one-line error.
private func labStep<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as LabError { throw CLIError(e.description) } catch let e as SysError { throw CLIError(e.description) }
}

struct LabRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Make the environment, run COMMAND in it, undo it; exits with COMMAND's status.",
        discussion: """
            COMMAND sees PREZERO_LAB_BIN, and with a pool PREZERO_LAB_DIR, PREZERO_LAB_MOUNT, \
            PREZERO_LAB_SOCKET, PREZERO_LAB_LOG, PREZERO_LAB_PAGE_SIZE and PREZERO_LAB_PAGES \
            (pages of the pool's size the host has). SIGINT and SIGTERM are passed to COMMAND; \
            the environment is undone after it exits.
            """)

    @Option(name: .long, help: "Huge pages to reserve, SIZE:PAGES[:AT_LEAST] (2M:1088, 1G:2, 2M:1088:300); repeatable. Given back after.")
    var reserve: [String] = []
    @Option(name: .long, help: "A private prezerod with this per-node target (2G, 512M); without it, no pool.")
    var target: String?
    @Option(name: .long, help: "The pool's file size (default: the target).")
    var fileSize: String?
    @Option(name: .long, help: "The pool's page size: 2M or 1G.")
    var pageSize: String = "2M"
    @Option(name: .long, help: "The pool's refill_delay_ms.")
    var refillDelayMs: Int = 1000
    @Option(name: .long, help: "Point libvirt at the pool with this hook: private (a wrapper beside the host's hooks), prezero (qemu.d/prezero), installed (a package's).")
    var libvirt: String?
    @Flag(name: .long, help: "Give /dev/kvm udev's mode for the run where libvirt's QEMU user needs it (implied by --libvirt).")
    var kvm = false
    @Option(name: .long, help: "The directory holding prezerod and prezero-hook (default: this program's).")
    var bin: String?
    @Argument(parsing: .postTerminator, help: "The command to run.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("name the command to run after --") }
        for r in reserve where HugePageReservation.Want(r) == nil {
            throw ValidationError("--reserve '\(r)' is not SIZE:PAGES[:AT_LEAST] with SIZE 2M or 1G (e.g. 2M:1088)")
        }
        guard ["2M", "1G"].contains(pageSize.uppercased()) else { throw ValidationError("--page-size must be 2M or 1G") }
        if let libvirt {
            guard LabLibvirt.Hook(rawValue: libvirt) != nil, libvirt != "none" else { throw ValidationError("--libvirt must be private, prezero or installed") }
            guard target != nil else { throw ValidationError("--libvirt needs a pool: give --target") }
        }
        for s in [target, fileSize].compactMap({ $0 }) where ByteSize.parse(s) == nil {
            throw ValidationError("'\(s)' is not a size (e.g. 2G, 512M)")
        }
    }

    func run() throws { try guarded(work) }

    private func work() throws {
        try requireRoot()
        var options = Lab.Options()
        options.reserve = reserve.compactMap(HugePageReservation.Want.init)
        if let target {
            var p = Lab.PoolOptions(pageSize: ByteSize.parse(pageSize.uppercased())!, target: target, fileSize: fileSize ?? target)
            p.refillDelayMs = refillDelayMs
            options.pool = p
        }
        options.libvirt = libvirt.flatMap(LabLibvirt.Hook.init(rawValue:))
        options.kvm = kvm
        let say = { (line: String) in Streams.writeError(line + "\n") }
        Signals.forward([SIGTERM, SIGINT, SIGHUP])
        let lab = try labStep { try Lab(bin: bin ?? Binaries.dir, options: options, say: say) }
        var status: Int32 = 1
        defer { lab.close(say: say) }
        if Signals.pending != 0 { throw ExitCode(128 + Signals.pending) }
        do {
            let child = try ChildProcess(command, stdin: nil, stdout: nil, stderr: nil, env: lab.environment)
            Signals.forward(to: child.pid)
            if Signals.pending != 0 { child.signal(Signals.pending) }
            status = try child.wait()
            Signals.forward(to: 0)
        } catch {
            say("prezero lab: cannot run \(command[0]): \(error)")
            status = 127
        }
        if status != 0, let log = lab.pool?.log(), !log.isEmpty {
            say("== the command failed (exit \(status)); the end of prezerod's log:")
            say(log.split(separator: "\n").suffix(20).map { "  | " + $0 }.joined(separator: "\n"))
        }
        if status != 0 { throw ExitCode(status) }
    }
}

/// The lab a command runs in, from the environment `prezero lab run` gave it.
private func currentLab() throws -> (dir: String, socket: String, mount: String) {
    guard let dir = Environment.value("PREZERO_LAB_DIR"), let socket = Environment.value("PREZERO_LAB_SOCKET"),
          let mount = Environment.value("PREZERO_LAB_MOUNT") else {
        throw CLIError("not inside a lab with a pool: run this under `prezero lab run --target SIZE -- ...`", code: 2)
    }
    return (dir, socket, mount)
}

struct LabDefine: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "define",
        abstract: "Define the lab's test guest in libvirt (destroyed and undefined when the lab ends); prints its UUID.")

    @Argument(help: "The domain's name.")
    var name: String
    @Option(name: .long, help: "Its memory (2G, 256M).")
    var memory: String
    @Option(name: .long, help: "Its <memoryBacking>: stock, threads=N (stock on N preallocation threads, bound to the first node so that libvirt adds a thread-context), prezero (the form prezero hands over to), or XML.")
    var backing: String = "prezero"
    @Option(name: .long, help: "Its UUID (default: a new one).")
    var uuid: String?

    func run() throws { try guarded(work) }

    private func work() throws {
        try requireRoot()
        let lab = try currentLab()
        guard let bytes = ByteSize.parse(memory) else { throw ValidationError("--memory '\(memory)' is not a size (e.g. 2G)") }
        let xml: String
        var bound = false
        switch backing {
        case "stock": xml = GuestDomain.Backing.stock()
        case "prezero": xml = GuestDomain.Backing.prezero
        case let b where b.hasPrefix("threads="):
            guard let n = Int(b.dropFirst("threads=".count)), n > 0 else { throw ValidationError("--backing threads=N needs a thread count") }
            xml = GuestDomain.Backing.stock(threads: n)
            bound = true
        default: xml = backing
        }
        var domain = GuestDomain(name: name, memoryKiB: bytes >> 10, backing: xml)
        // The best stock form: bound to the first node, so that libvirt adds a thread-context.
        if bound { domain.numatune = "<numatune><memory mode='strict' nodeset='\(Numa.memoryNodes().first ?? 0)'/></numatune>" }
        if let uuid { domain.uuid = uuid }
        try labStep { try LabLibvirt.define(domain, inLab: lab.dir) }
        print(domain.uuid)
    }
}

struct LabSettle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settle",
        abstract: "Wait until the lab's pool is back at its target with nothing leased, filling or kept for a launch.")

    @Option(name: .long, help: "Seconds to wait.")
    var timeout: Double = 300

    func run() throws { try guarded(work) }

    private func work() throws {
        let lab = try currentLab()
        try labStep { try LabPool.settle(ControlClient(socket: lab.socket, timeout: 20), mount: lab.mount, timeout: timeout) }
    }
}

struct LabHugePages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hugepages",
        abstract: "The host's huge pages: idle (fail, naming the mounts, if any is in use), most-1g MAX (how many 1 GiB pages the host can reserve now).")

    @Argument(help: "idle or most-1g.")
    var action: String
    @Argument(help: "most-1g's MAX.")
    var max: UInt64?

    func run() throws { try guarded(work) }

    private func work() throws {
        switch action {
        case "idle":
            if let busy = HugePageReservation.busy() { throw CLIError(busy) }
        case "most-1g":
            try requireRoot()
            guard let max else { throw ValidationError("most-1g needs MAX") }
            print(HugePageReservation.most1G(max: max))
        default:
            throw ValidationError("hugepages: idle or most-1g MAX")
        }
    }
}

struct LabRestore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Undo what a killed lab left: its prezerod, mount, hook and qemu.conf lines, /dev/kvm's mode, the huge page counts.",
        discussion: "Only for after a kill: a lab that is still running would lose its huge pages.")

    func run() throws { try guarded(work) }

    private func work() throws {
        try requireRoot()
        LabPool.reapStale()
        if let line = try labStep({ try KvmAccess.restore() }) { print(line) }
        try labStep { try HugePageReservation.restore() }
    }
}
