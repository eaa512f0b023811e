import Foundation
import PrezeroLibvirtModel
import PrezeroQemuModel

/// The one guest the tests, the benches and the demo define: no disk (SeaBIOS idling is
/// enough to time a start), or with `boot` a kernel whose /init writes a marker on the serial
/// console; type kvm where libvirt's QEMU can use KVM, else qemu (TCG).
public struct GuestDomain: Sendable {
    /// The `<memoryBacking>` children of each form a guest is timed in.
    public enum Backing {
        /// Huge pages of the pool's size, preallocated and zeroed by QEMU at start, on
        /// `threads` threads when given (`prealloc-threads`).
        public static func stock(pageKiB: UInt64? = nil, threads: Int? = nil) -> String {
            (pageKiB.map { "<hugepages><page size='\($0)' unit='KiB'/></hugepages>" } ?? "<hugepages/>")
                + (threads.map { "<allocation mode='immediate' threads='\($0)'/>" } ?? "<allocation mode='immediate'/>")
        }

        /// The form prezero hands pre-zeroed files to.
        public static let prezero = DomainRewrite.eligibleBacking
    }

    /// A kernel and initramfs whose /init writes `marker` on the first serial port.
    public struct Boot: Sendable {
        public static let marker = "PREZERO-BOOT-USERSPACE"
        public var kernel: String
        public var initrd: String
        /// The file the serial console is written to (virtlogd truncates it at each start).
        public var console: String
        public init(kernel: String, initrd: String, console: String) {
            self.kernel = kernel
            self.initrd = initrd
            self.console = console
        }
    }

    public var name: String
    public var uuid: String
    public var memoryKiB: UInt64
    public var backing: String
    /// `kvm` or `qemu`: `LabLibvirt.accel.domainType` for a guest libvirt starts.
    public var type: String
    public var vcpus = 1
    /// `<numa>` inside `<cpu>`.
    public var cells = ""
    public var numatune = ""
    public var boot: Boot?
    /// `<maxMemory>`, for memory devices.
    public var maxMemory = ""
    /// `<features><acpi/></features>`: QEMU refuses a pc-dimm without ACPI.
    public var acpi = false
    /// More devices, before the memballoon.
    public var devices = ""
    /// More elements after `<devices>`.
    public var extra = ""

    public init(name: String, uuid: String = UUID().uuidString.lowercased(), memoryKiB: UInt64, backing: String,
                type: String = LabLibvirt.accel.domainType) {
        self.name = name
        self.uuid = uuid
        self.memoryKiB = memoryKiB
        self.backing = backing
        self.type = type
    }

    public var xml: String {
        let os = boot.map { "<kernel>\($0.kernel)</kernel><initrd>\($0.initrd)</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline>" }
            ?? "<boot dev='hd'/>"
        let serial = boot.map { "<serial type='file'><source path='\($0.console)'/><target port='0'/></serial>" } ?? ""
        return """
            <domain type='\(type)' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>\(name.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;"))</name>
              <uuid>\(uuid)</uuid>
              <memory unit='KiB'>\(memoryKiB)</memory>
              \(maxMemory)
              <memoryBacking>\(backing)</memoryBacking>
              <vcpu placement='static'>\(vcpus)</vcpu>
              \(numatune)
              <os><type arch='x86_64' machine='pc'>hvm</type>\(os)</os>
              \(acpi ? "<features><acpi/></features>" : "")
              <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model>\(cells)</cpu>
              <clock offset='utc'/>
              <on_poweroff>destroy</on_poweroff>
              <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\(devices)<memballoon model='none'/>\(serial)</devices>
              \(extra)
            </domain>
            """
    }
}
