import ArgumentParser
import Foundation
import PrezeroBench
import PrezeroClient
import PrezeroCore
import PrezeroHookHandler
import PrezeroLab
import PrezeroLibvirtModel
import PrezeroLibvirt
import PrezeroHost
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

/// The host as the libvirt bench finds it (set up by `prezero lab run --libvirt prezero`),
/// checked, and the guests it times, undefined again by `close()`.
final class BenchGuests {
    static let eligible = GuestDomain.Backing.prezero
    let conn: LibvirtConnection
    let connection: Connection
    let mount: String
    let pageSize: UInt64
    let hook: String
    let hookAside: HookAside
    let accel: AccelDecision
    /// For the --boot guests, which boot a kernel.
    let bootAccel: AccelDecision
    /// Huge pages of the pool's size the host has reserved (sysfs).
    let reservedPages: UInt64
    let work: String
    var domains: [String] = []

    /// The stock form of the same guest: huge pages of the pool's size, preallocated and
    /// zeroed by QEMU at start (libvirt sets prealloc for huge pages), on `threads`
    /// threads when given (`prealloc-threads`).
    func stock(threads: Int? = nil) -> String { GuestDomain.Backing.stock(pageKiB: pageSize >> 10, threads: threads) }

    init(libvirt: LibvirtOptions, connection: Connection) throws {
        hookAside = HookAside(hooksDir: libvirt.hooksDir)
        hook = hookAside.hook
        // A bench that was killed with the hook moved aside puts it back first.
        hookAside.restore()
        guard Files.status(followingPath: hook) != nil else {
            throw CLIError("no hook at \(hook); run `prezero install` and restart libvirtd (`prezero libvirt doctor` checks the setup)")
        }
        self.connection = connection
        let status = try connection.status()
        let host: HookHost
        do {
            host = try HostDiscovery.hookHost(qemuConf: libvirt.qemuConf, domain: nil,
                                              poolMounts: status.mounts.map { HookHost.Mount(path: $0.path, pageSize: $0.pageSize) }).1
        } catch {
            throw CLIError(error.description, code: 2)
        }
        guard let m = host.backingPoolMount.map({ ($0.path, $0.pageSize) }) else {
            throw CLIError("memory_backing_dir in \(libvirt.qemuConf) is not on a pool mount; `prezero libvirt doctor` says what to change")
        }
        (mount, pageSize) = m
        accel = HostAccelerator.forLibvirt(qemuConf: libvirt.qemuConf)
        bootAccel = HostAccelerator.forLibvirt(qemuConf: libvirt.qemuConf, bootsKernel: true)
        reservedPages = HugePageCounters.host(pageSize: pageSize)?.total ?? 0
        // World-traversable: QEMU (as qemu.conf's user) opens the boot kernel and initrd beside it.
        work = "/tmp/prezero-bench-libvirt-\(Processes.current())"
        do { try Files.makeDirectories(work, mode: 0o755) } catch { throw CLIError("cannot make \(work): \(error)") }
        conn = try libvirt.open()
    }

    /// Defines the lab's guest (`GuestDomain`); with `boot`, the kernel boots to its /init,
    /// which writes its marker on ttyS0 (a file). `bound`: its memory bound to the host's first
    /// memory node (`<numatune>` strict), so that libvirt gives QEMU's preallocation a
    /// thread-context there (libvirt 9.0 and QEMU 7.2 and later): the best stock form.
    func define(_ role: String, bytes: UInt64, backing: String, boot: (kernel: String, initrd: String)? = nil, bound: Bool = false) throws -> String {
        let name = "prezero-bench-\(role)-\(Processes.current())"
        var d = GuestDomain(name: name, memoryKiB: bytes >> 10, backing: backing, type: (boot == nil ? accel : bootAccel).domainType)
        if bound { d.numatune = "<numatune><memory mode='strict' nodeset='\(Numa.memoryNodes().first ?? 0)'/></numatune>" }
        d.boot = boot.map { GuestDomain.Boot(kernel: $0.kernel, initrd: $0.initrd, console: consolePath(name)) }
        let xml = d.xml
        try libvirtCall { () throws(LibvirtError) in try conn.define(xml) }
        domains.append(name)
        return name
    }

    func settle() throws { try settlePool(connection, mount: mount) }

    /// Seconds libvirt takes to start `name`; then destroys it. A hand-over that did not
    /// happen is an error, never a figure.
    func timeStart(_ name: String, handedOver: UInt64? = nil) throws -> Double {
        try settle()
        let t = monotonicSeconds()
        try libvirtCall { () throws(LibvirtError) in try conn.start(name) }
        let took = monotonicSeconds() - t
        defer { try? conn.destroy(name) }
        try checkHandedOver(name, handedOver)
        return took
    }

    /// Seconds libvirt takes to restore `name` from a state saved just before (virDomainRestore:
    /// start begin, QEMU with -incoming, the saved memory loaded); then destroys it.
    func timeRestore(_ name: String, handedOver: UInt64? = nil) throws -> Double {
        let image = work + "/\(name).save"
        defer { try? Files.removePath(image) }
        try settle()
        try libvirtCall { () throws(LibvirtError) in try conn.start(name) }
        try checkHandedOver(name, handedOver)
        try libvirtCall { () throws(LibvirtError) in try conn.save(name, to: image) }
        try settle()
        let t = monotonicSeconds()
        try libvirtCall { () throws(LibvirtError) in try conn.restore(from: image) }
        let took = monotonicSeconds() - t
        defer { try? conn.destroy(name) }
        try checkHandedOver(name, handedOver)
        return took
    }

    func consolePath(_ name: String) -> String { work + "/\(name).console" }

    /// Seconds from virDomainCreate until the guest's /init has written its marker on the
    /// serial console (virtlogd writes it to a file, truncated at each start); then destroys it.
    func timeBoot(_ name: String, handedOver: UInt64? = nil) throws -> Double {
        try settle()
        let console = consolePath(name)
        let t = monotonicSeconds()
        try libvirtCall { () throws(LibvirtError) in try conn.start(name) }
        defer { try? conn.destroy(name) }
        try checkHandedOver(name, handedOver)
        while Files.readText(console)?.contains(GuestDomain.Boot.marker) != true {
            guard monotonicSeconds() - t < 180 else {
                throw CLIError("\(name): no \(GuestDomain.Boot.marker) on the serial console within 180 s; see \(console)")
            }
            sleepSeconds(0.002)
        }
        return monotonicSeconds() - t
    }

    /// A hand-over that did not happen is an error, never a figure.
    func checkHandedOver(_ name: String, _ want: UInt64?) throws {
        guard let want else { return }
        let leased = (try? connection.client.status())?.mounts.first { $0.path == mount }?.nodes
            .reduce(0) { $0 + $1.leasedBytes } ?? 0
        guard leased >= want else {
            throw CLIError("\(name) was not handed over (\(ByteSize.format(leased)) leased); prezerod's log says why. Is the pool's target at least \(ByteSize.format(want))?")
        }
    }

    /// Runs `body` with the hook moved out of libvirt's hook directory, and puts it back.
    /// With `noop`, /bin/true stands in its place: what libvirt's running of any hook costs.
    func withHookAside<T>(noop: Bool = false, _ body: () throws -> T) throws -> T {
        do { try hookAside.setAside(standIn: noop ? "/bin/true" : nil) } catch { throw CLIError(error.description) }
        defer { hookAside.restore() }
        return try body()
    }

    /// The hook's three calls at a start (prepare, start, started begin) run directly,
    /// with the domain's XML on stdin as libvirt gives it: seconds for the three.
    func timeHookCalls(_ name: String, times: Int) throws -> [Double] {
        let xml = try libvirtCall { () throws(LibvirtError) in try conn.xml(name) }
            .replacingOccurrences(of: "<domain type='\(accel.domainType)'>", with: "<domain type='\(accel.domainType)' id='999999'>")
        let input = "/tmp/prezero-bench-\(Processes.current()).xml"
        do {
            try Files.writeText(input, xml)
        } catch {
            throw CLIError("cannot write \(input): \(error)")
        }
        defer { try? Files.removePath(input) }
        var out: [Double] = []
        for _ in 0..<times {
            let t = monotonicSeconds()
            for call in [["prepare", "begin"], ["start", "begin"], ["started", "begin"]] {
                do {
                    try ChildProcess([hook, name] + call + ["-"], stdin: input).wait()
                } catch {
                    throw CLIError("cannot run the hook \(hook): \(error)")
                }
            }
            out.append(monotonicSeconds() - t)
        }
        return out
    }

    func close() {
        hookAside.restore()
        for d in domains {
            try? conn.destroy(d)
            try? conn.undefine(d)
        }
        domains = []
        _ = try? ChildProcess(["rm", "-rf", work]).wait()
    }
}

/// Waits for the pool on `mount` to settle (`LabPool.settle`), as the CLI's one-line error.
func settlePool(_ connection: Connection, mount: String) throws {
    do {
        try LabPool.settle(connection.client, mount: mount)
    } catch {
        throw CLIError("\(error)")
    }
}
