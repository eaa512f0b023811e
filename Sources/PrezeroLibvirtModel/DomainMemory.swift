/// What a libvirt domain XML says about guest memory: the parts of libvirt 9.0's
/// `virDomainDef` (`mem`, `numa`, `mems`) that decide the backends QEMU gets.
/// Sizes are in bytes, rounded up to whole KiB as libvirt stores them.
public struct DomainMemory: Equatable, Sendable {
    /// `<memoryBacking><source type>`; `none` when it is absent.
    public enum Source: String, Sendable { case none, file, anonymous, memfd }
    /// `<access mode>` (`memAccess` on a cell); `default` when it is absent.
    public enum Access: String, Sendable { case `default`, shared, `private` }

    /// One `<memoryBacking><hugepages><page>`; `size` 0 is `<hugepages/>` with no page.
    public struct HugePage: Equatable, Sendable {
        public var size: UInt64
        /// Guest cells it applies to; nil: every cell without a page of its own.
        public var cells: [Int]?
    }

    /// `<numatune><memory>` or one `<memnode>`.
    public struct Tune: Equatable, Sendable {
        public var mode: String
        /// Host nodes; nil with `placement='auto'` (numad's advice, unknown here).
        public var nodes: [Int]?
    }

    /// One guest NUMA cell, `<cpu><numa><cell>`: its memory and its `memAccess`.
    public struct Cell: Equatable, Sendable {
        public var bytes: UInt64
        public var access: Access
    }

    /// A `<devices><memory>` device.
    public struct Device: Equatable, Sendable {
        /// The `<memory model>` values libvirt 9.0 knows.
        public enum Model: String, Sendable, CaseIterable {
            case dimm, nvdimm, virtioPmem = "virtio-pmem", virtioMem = "virtio-mem", sgxEPC = "sgx-epc"
            /// qemuAssignDeviceMemoryAlias's prefixes.
            var aliasPrefix: String {
                switch self {
                case .dimm: "dimm"
                case .nvdimm: "nvdimm"
                case .virtioPmem: "virtiopmem"
                case .virtioMem: "virtiomem"
                case .sgxEPC: "epc"
                }
            }
        }
        public var model: Model
        public var alias: String
        public var access: Access
        public var bytes: UInt64
        public var targetNode: Int?
        /// `<source><pagesize>`; 0 when absent.
        public var pageSize: UInt64
        /// `<source><nodemask>`.
        public var sourceNodes: [Int]?
        /// `<source><path>` of an nvdimm or virtio-pmem.
        public var path: String?
        public var pmem: Bool
        /// virtio-mem's `<target><requested>`.
        public var requested: UInt64
    }

    /// Memory a device keeps in a file of its own, beside guest RAM: libvirt gives QEMU a
    /// memory-backend-file for it, which is never prezero's to touch.
    public struct DeviceFile: Equatable, Sendable {
        public enum Kind: String, Sendable {
            /// `<pstore backend='acpi-erst'>` (libvirt 10.6 and later): `mem<alias>`, the `<path>` file.
            case pstore
            /// `<shmem>` of model ivshmem-plain: `shmmem-<alias>`, the file /dev/shm/<name>.
            case shmem
        }
        public var kind: Kind
        public var alias: String
        public var path: String?
        public var bytes: UInt64
    }

    /// The uid and gid QEMU runs as for this domain: a handed-over file becomes theirs.
    public struct Owner: Equatable, Sendable {
        public var uid: UInt32
        public var gid: UInt32
        /// An owner by uid and gid.
        public init(uid: UInt32, gid: UInt32) {
            self.uid = uid
            self.gid = gid
        }
    }

    public var name: String
    public var uuid: String
    /// The running id; only the start-time XML has one.
    public var id: Int?
    public var arch: String?
    public var machine: String?
    /// `<domain type>`: kvm or qemu.
    public var virtType: String?
    public var emulator: String?
    /// `<memory>`: everything, devices included.
    public var total: UInt64
    public var source: Source
    public var access: Access
    public var immediate: Bool
    public var hugepages: [HugePage]
    public var numatune: Tune?
    public var memnodes: [Int: Tune]
    public var cells: [Cell]
    public var devices: [Device]
    /// pstore and ivshmem-plain memory, each in its own file.
    public var deviceFiles: [DeviceFile]
    /// The host CPUs the emulator threads may run on (`<cputune><emulatorpin cpuset>`), else the
    /// vCPUs' (`<vcpu cpuset>`); nil when neither is set. `<vcpu placement='auto'>` leaves it
    /// to numad: then `cpusFromNumad`.
    public var emulatorCPUs: [Int]?
    public var cpusFromNumad = false
    /// DAC owner from `<seclabel model='dac'><label>+UID:+GID`.
    public var owner: Owner?
}
