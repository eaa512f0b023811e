import PrezeroCore
import PrezeroLibvirtModel
import PrezeroHost
import PrezeroQemuModel
import PrezeroSys

extension HostDiscovery {
    /// The libvirt facts for a domain's plan, read now: qemu.conf, the kernel's default huge
    /// page size, the hugetlbfs mounts, and the machine's RAM id from libvirt's capabilities
    /// cache (`machineRAMId` overrides it). A qemu.conf libvirt would refuse throws.
    public static func hookHost(qemuConf path: String, domain d: DomainMemory?, poolMounts: [HookHost.Mount],
                                machineRAMId: String? = nil) throws(HostError) -> (QemuConf, HookHost) {
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
            ramId = HostDiscovery.firstInCapabilitiesCache {
                LibvirtBackends.cachedRAMId(capsXML: $0, emulator: emulator, machine: machine, virtType: d.virtType ?? "kvm")
            }
        }
        let host = HookHost(conf: conf, meminfo: HostDiscovery.meminfo(), mountinfo: HostDiscovery.mountinfo(), poolMounts: poolMounts, machineRAMId: ramId)
        return (conf, host)
    }
}
