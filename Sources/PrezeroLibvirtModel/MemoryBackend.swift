/// One memory backend QEMU will create for a domain, as the libvirt it is planned for builds it.
public struct MemoryBackend: Equatable, Sendable {
    /// The QEMU backend object type, as written on QEMU's command line.
    public enum Kind: String, Sendable, Codable {
        case file = "memory-backend-file", ram = "memory-backend-ram", memfd = "memory-backend-memfd", epc = "memory-backend-epc"
    }
    /// Where `mem-path` points.
    public enum Path: Equatable, Sendable {
        /// A file QEMU opens, or creates, under memory_backing_dir: the one a hand-over links.
        case backingFile(String)
        /// A hugetlbfs directory QEMU creates its own file in.
        case hugepageDirectory(String)
        /// An nvdimm's or virtio-pmem's own file.
        case deviceFile(String)

        /// `file`, `directory` or `device`: the plan JSON's `path_kind`.
        public var kind: String {
            switch self {
            case .backingFile: "file"
            case .hugepageDirectory: "directory"
            case .deviceFile: "device"
            }
        }

        public var path: String {
            switch self {
            case .backingFile(let p), .hugepageDirectory(let p), .deviceFile(let p): p
            }
        }
    }

    /// The QOM id: the machine's RAM id, `ram-node<N>`, `mem<alias>` or `shmmem-<alias>`; nil for
    /// system RAM whose machine type has a RAM id prezero cannot know (QEMU names it).
    public var id: String?
    /// The file name under the domain's directory (mem.info.alias): `pc.ram`, `ram-node0`, `dimm0`;
    /// nil where the id is.
    public var alias: String?
    public var kind: Kind
    public var path: Path?
    /// Huge-page size in bytes; 0 when QEMU uses the system's pages (memfd without hugetlb, ram,
    /// a file: then the page size is its file system's).
    public var hugepageSize: UInt64
    public var bytes: UInt64
    /// `share`; nil leaves QEMU's default (off for file and ram, on for memfd).
    public var share: Bool?
    /// Host nodes its pages may come from; empty means any node, unless `nodesFromNumad`.
    public var hostNodes: [Int]
    /// `placement='auto'`: libvirt binds it to the nodes numad advises when the domain starts,
    /// which no hook call can know.
    public var nodesFromNumad = false
    /// QEMU's `policy` (bind, preferred, interleave); `restrictive` binds through cgroups only, so
    /// QEMU gets neither host-nodes nor a policy.
    public var policy: String?
    public var prealloc: Bool
    /// The `thread-context` libvirt adds for preallocation on bound nodes.
    public var threadContext: String?
    /// The guest device it serves: `system RAM`, `cell 0`, `dimm dimm0`, …
    public var device: String
    /// The memory device's model, nil for system RAM and cells.
    public var model: DomainMemory.Device.Model?
    /// Bytes the guest gets at start (virtio-mem's requested size; the size otherwise).
    public var startBytes: UInt64

    /// Mapped shared, so that the guest writes the file's own pages.
    public var shared: Bool { share ?? (kind == .memfd) }
}
