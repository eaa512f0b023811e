import PrezeroCore
import PrezeroLibvirtModel
import PrezeroHost
import PrezeroQemuModel
import PrezeroSys

extension HostDiscovery {
    /// The libvirt facts for a domain's plan, read now: qemu.conf, the kernel's default huge
    /// page size, the hugetlbfs mounts, and from libvirt's capabilities cache `capabilities`
    /// libvirt's version and the machine's RAM id (`libvirtVersion` and `machineRAMId` override
    /// them). A qemu.conf libvirt would refuse throws.
    public static func hookHost(qemuConf path: String, capabilities: String = Config().libvirtCapabilitiesCache, domain d: DomainMemory?, poolMounts: [HookHost.Mount],
                                machineRAMId: String? = nil, libvirtVersion: LibvirtVersion? = nil) throws(HostError) -> (QemuConf, HookHost) {
        let conf: QemuConf
        do {
            conf = try QemuConf.parse(Files.readText(path) ?? "")
        } catch {
            throw HostError(description: "\(path): \(error.description)")
        }
        var ramId = machineRAMId
        // The id names the file of a file-backed system RAM (no guest NUMA, a file source or an
        // access mode); any other backend only shows it, and the machine-type table serves. A start
        // waits on this read of two ~200 KB files, so it is skipped when no hand-over can depend on it.
        if ramId == nil, let d, d.cells.isEmpty, d.source == .file || d.access != .default,
           let emulator = d.emulator, let machine = d.machine {
            ramId = HostDiscovery.firstInCapabilitiesCache(capabilities) {
                LibvirtBackends.cachedRAMId(capsXML: $0, emulator: emulator, machine: machine, virtType: d.virtType ?? "kvm")
            }
        }
        var host = HookHost(conf: conf, meminfo: HostDiscovery.meminfo(), mountinfo: HostDiscovery.mountinfo(), poolMounts: poolMounts, machineRAMId: ramId,
                            libvirtVersion: libvirtVersion ?? HostDiscovery.cachedLibvirtVersion(capabilities))
        // Only a domain pinned to CPUs can have its thread-context cut: every other start skips the reads.
        if d?.emulatorCPUs != nil { host.cpuNodes = HostDiscovery.cpuNodes() }
        return (conf, host)
    }
}
