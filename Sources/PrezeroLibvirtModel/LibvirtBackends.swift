import PrezeroCore
import PrezeroProtocol
import PrezeroQemuModel

/// The libvirt and host facts the backends depend on, besides the domain XML.
public struct HookHost: Sendable {
    /// qemu.conf's memory_backing_dir as written (nil: libvirt's default, /var/lib/libvirt/qemu/ram).
    public var memoryBackingDir: String?
    /// The hugetlbfs mounts libvirt uses (qemu.conf's hugetlbfs_mount, or every mount), with page sizes.
    public var hugetlbfs: [Mount]
    /// Every hugetlbfs mount on the host, for the file system under memory_backing_dir.
    public var hostMounts: [Mount]
    /// prezerod's pool mounts.
    public var poolMounts: [Mount]
    /// The kernel's default huge-page size (/proc/meminfo's Hugepagesize).
    public var defaultHugepageSize: UInt64
    /// The machine type's default RAM id (`query-machines`' default-ram-id); nil: from the table.
    public var machineRAMId: String?
    /// The libvirt the plan follows; nil: unknown, planned by the oldest rules prezero knows (9.0).
    public var libvirtVersion: LibvirtVersion?
    /// The host node of each CPU (/sys/devices/system/node); nil when not known (a plan made
    /// offline), and then a thread-context is shown untrimmed.
    public var cpuNodes: [Int: Int]?
    public var systemPageSize: UInt64 = 4096

    /// A hugetlbfs mount and its page size in bytes.
    public struct Mount: Equatable, Sendable {
        public var path: String
        public var pageSize: UInt64
        /// A mount at `path` with pages of `pageSize` bytes.
        public init(path: String, pageSize: UInt64) {
            self.path = path
            self.pageSize = pageSize
        }
    }

    /// The facts as given rather than read from this host: for tests, and for `libvirt plan`
    /// with `--xml` and `--qemu-conf`.
    public init(memoryBackingDir: String?, hugetlbfs: [Mount], hostMounts: [Mount], poolMounts: [Mount],
                defaultHugepageSize: UInt64, machineRAMId: String? = nil, libvirtVersion: LibvirtVersion? = nil) {
        self.memoryBackingDir = memoryBackingDir
        self.hugetlbfs = hugetlbfs
        self.hostMounts = hostMounts
        self.poolMounts = poolMounts
        self.defaultHugepageSize = defaultHugepageSize
        self.machineRAMId = machineRAMId
        self.libvirtVersion = libvirtVersion
    }

    /// The version whose rules apply: the one given, else the oldest prezero knows.
    public var rules: LibvirtVersion { libvirtVersion ?? .oldest }

    /// The facts as read on the host: qemu.conf, /proc/meminfo (2 MiB when it names no
    /// default size), /proc/self/mountinfo, and the pool mounts. libvirt uses qemu.conf's
    /// hugetlbfs_mount when it is set (virQEMUDriverConfigLoadFile), every mount otherwise.
    public init(conf: QemuConf, meminfo: String, mountinfo: String, poolMounts: [Mount], machineRAMId: String? = nil,
                libvirtVersion: LibvirtVersion? = nil) {
        let def = ProcParsers.defaultHugepageSize(meminfo: meminfo) ?? (2 << 20)
        let mounts = ProcParsers.hugetlbfsMounts(mountinfo: mountinfo).map { Mount(path: $0.path, pageSize: $0.pageSizeOption ?? def) }
        self.init(memoryBackingDir: conf.memoryBackingDir, hugetlbfs: Self.libvirtMounts(conf, among: mounts), hostMounts: mounts,
                  poolMounts: poolMounts, defaultHugepageSize: def, machineRAMId: machineRAMId, libvirtVersion: libvirtVersion)
    }

    /// The mounts libvirt uses: qemu.conf's hugetlbfs_mount when set, every mount otherwise.
    public static func libvirtMounts(_ conf: QemuConf, among mounts: [Mount]) -> [Mount] {
        guard let paths = conf.hugetlbfsMounts else { return mounts }
        return paths.compactMap { p in mounts.first { HookPlanner.normalize($0.path) == HookPlanner.normalize(p) } }
    }

    /// cfg->memoryBackingDir: `<memory_backing_dir>/libvirt/qemu` (virQEMUDriverConfigLoadMemoryEntry).
    public var backingBase: String {
        memoryBackingDir.map { HookPlanner.normalize($0) + "/libvirt/qemu" } ?? "/var/lib/libvirt/qemu/ram"
    }

    /// The hugetlbfs mount a path lies on, the deepest first.
    public func mount(of path: String) -> Mount? {
        let p = HookPlanner.normalize(path)
        return (hostMounts + poolMounts).filter { m in
            let base = HookPlanner.normalize(m.path)
            return p == base || p.hasPrefix(base == "/" ? "/" : base + "/")
        }.max { HookPlanner.normalize($0.path).count < HookPlanner.normalize($1.path).count }
    }

    /// The pool mount cfg->memoryBackingDir lies on, if any: where hand-overs go.
    public var backingPoolMount: Mount? {
        mount(of: backingBase).flatMap { isPoolMount($0) ? $0 : nil }
    }

    /// Whether `m` is one of prezerod's pool mounts, the paths compared as libvirt compares them.
    public func isPoolMount(_ m: Mount) -> Bool {
        poolMounts.contains { HookPlanner.normalize($0.path) == HookPlanner.normalize(m.path) }
    }
}

/// Why the backends cannot be planned (a domain libvirt itself would refuse), in one line.
public struct PlanError: Error, Equatable, CustomStringConvertible {
    @OneLine public var description: String
}

/// The backends libvirt gives QEMU for a domain, by the rules of the version in `HookHost`
/// (9.0 and later). Each rule names the libvirt function (src/qemu/qemu_command.c unless
/// noted) whose behaviour it follows, and the version where it changed.
public enum LibvirtBackends {
    /// The system RAM id of machine types whose QEMU answers `query-machines` with one.
    /// libvirt reads it from QEMU (virQEMUCapsGetMachineDefaultRAMid); this table is the fallback.
    public static func defaultRAMId(arch: String?, machine: String?) -> String? {
        let m = machine ?? ""
        switch arch ?? "x86_64" {
        case "x86_64", "i686":
            return m.hasPrefix("pc") || m.hasPrefix("q35") || m.isEmpty ? "pc.ram" : (m.hasPrefix("microvm") ? "microvm.ram" : nil)
        case "aarch64", "armv7l":
            return m.hasPrefix("virt") || m.isEmpty ? "mach-virt.ram" : nil
        case "ppc64", "ppc64le":
            return m.hasPrefix("pseries") || m.isEmpty ? "ppc_spapr.ram" : nil
        case "s390x":
            return m.hasPrefix("s390-ccw-virtio") || m.isEmpty ? "s390.ram" : nil
        case "riscv64":
            return m.hasPrefix("virt") || m.isEmpty ? "riscv_virt_board.ram" : nil
        default:
            return nil
        }
    }

    /// A defined domain that is not running has id -1, as `virsh domxml-to-native` shows.
    static func shortName(_ d: DomainMemory) -> String {
        HookPlanner.shortNames(id: d.id ?? -1, name: d.name)[0]
    }

    /// One backend's inputs, as libvirt fills a `virDomainMemoryDef` for it.
    struct Spec {
        var id: String?
        var alias: String?
        var bytes: UInt64
        var targetNode: Int
        var access: DomainMemory.Access = .default
        var pageSize: UInt64 = 0
        var sourceNodes: [Int]?
        var path: String?
        var pmem = false
        var model: DomainMemory.Device.Model?
        var device: String
        var startBytes: UInt64
    }

    /// Every memory backend QEMU gets for the domain, as the libvirt of `host.rules` builds them;
    /// a domain libvirt would refuse throws.
    public static func plan(_ d: DomainMemory, host: HookHost) throws(PlanError) -> [MemoryBackend] {
        var specs: [Spec] = []
        var deviceBytes: UInt64 = 0
        for dev in d.devices {
            let (s, o) = deviceBytes.addingReportingOverflow(dev.bytes)
            guard !o else { throw PlanError(description: "memory device sizes overflow") }
            deviceBytes = s
        }
        if d.cells.isEmpty {
            // qemuBuildMemCommandLine: without guest NUMA, one backend for the initial memory
            // (virDomainDefGetMemoryInitial: <memory> less the memory devices).
            guard d.total > deviceBytes else {
                throw PlanError(description: "<memory> \(d.total) is not larger than its memory devices (\(deviceBytes) bytes): libvirt refuses it")
            }
            // An unknown machine type: its RAM id (or whether QEMU takes -m alone) is not known
            // here; the backend is listed without one and left alone.
            let ram = host.machineRAMId ?? defaultRAMId(arch: d.arch, machine: d.machine)
            specs.append(Spec(id: ram, alias: ram, bytes: d.total - deviceBytes, targetNode: -1, device: "system RAM", startBytes: d.total - deviceBytes))
        } else {
            // qemuBuildMemoryCellBackendProps: `ram-node<N>`, one per cell.
            var sum: UInt64 = 0
            for (i, c) in d.cells.enumerated() {
                let (s, o) = sum.addingReportingOverflow(c.bytes)
                guard !o else { throw PlanError(description: "cell sizes overflow") }
                sum = s
                specs.append(Spec(id: "ram-node\(i)", alias: "ram-node\(i)", bytes: c.bytes, targetNode: i, device: "cell \(i)", startBytes: c.bytes))
            }
        }
        // qemuBuildMemoryDimmBackendStr: `mem<alias>` for each device; its file is named after the alias.
        for dev in d.devices {
            if let n = dev.targetNode, !d.cells.isEmpty, n >= d.cells.count {
                throw PlanError(description: "\(dev.alias) targets guest node \(n), but the domain has \(d.cells.count) cell(s)")
            }
            specs.append(Spec(id: "mem\(dev.alias)", alias: dev.alias, bytes: dev.bytes, targetNode: dev.targetNode ?? -1,
                              access: dev.access, pageSize: dev.pageSize, sourceNodes: dev.sourceNodes, path: dev.path,
                              pmem: dev.pmem, model: dev.model, device: "\(dev.model.rawValue) \(dev.alias)",
                              startBytes: dev.model == .virtioMem ? dev.requested : dev.bytes))
        }
        var out = try specs.map { s throws(PlanError) in try backend(s, d, host) }
        // qemuBuildPstoreCommandLine (10.6 and later; 9.0 ignores <pstore>) and
        // qemuBuildShmemBackendMemProps: a shared memory-backend-file on the device's own file.
        for f in d.deviceFiles where f.kind != .pstore || host.rules >= LibvirtVersion(10, 6, 0) {
            let id = f.kind == .pstore ? "mem\(f.alias)" : "shmmem-\(f.alias)"
            out.append(MemoryBackend(id: id, alias: f.alias, kind: .file, path: f.path.map { .deviceFile($0) }, hugepageSize: 0,
                                     bytes: f.bytes, share: true, hostNodes: [], policy: nil, prealloc: false, threadContext: nil,
                                     device: "\(f.kind.rawValue) \(f.alias)", model: nil, startBytes: f.bytes))
        }
        return out
    }

    /// qemuBuildMemoryBackendProps.
    static func backend(_ s: Spec, _ d: DomainMemory, _ host: HookHost) throws(PlanError) -> MemoryBackend {
        // The access mode: the device's, else its cell's, else the domain's.
        var access = s.access
        if access == .default, s.targetNode >= 0, s.targetNode < d.cells.count { access = d.cells[s.targetNode].access }
        if access == .default { access = d.access }

        let (pageSize, useHugepage, prealloc) = try pagesize(s, d, host)

        var kind = MemoryBackend.Kind.file
        var path: MemoryBackend.Path?
        var hugepageSize: UInt64 = 0
        var share: Bool? = access == .shared ? true : (access == .private ? false : nil)
        if s.model == .sgxEPC {
            kind = .epc
            share = nil
        } else if s.path == nil, d.source == .memfd {
            kind = .memfd
            hugepageSize = useHugepage ? pageSize : 0
        } else if useHugepage || s.path != nil || access != .default || d.source == .file {
            if let p = s.path {
                path = .deviceFile(p)
            } else if useHugepage {
                // qemuGetDomainHupageMemPath (qemu_conf.c): the mount of exactly that page size.
                guard let m = host.hugetlbfs.first(where: { $0.pageSize == pageSize }) else {
                    throw PlanError(description: "\(s.device) wants \(ByteSize.format(pageSize)) pages but no hugetlbfs mount has that size: libvirt refuses to start it")
                }
                path = .hugepageDirectory(HookPlanner.normalize(m.path) + "/libvirt/qemu/" + shortName(d))
                hugepageSize = pageSize
            } else {
                // qemuGetMemoryBackingPath (qemu_conf.c): the domain's directory, then the alias.
                path = s.alias.map { .backingFile(host.backingBase + "/" + shortName(d) + "/" + $0) }
            }
        } else {
            kind = .ram
        }

        // virDomainNumatuneGetMode, then the device's <source><nodemask> or
        // virDomainNumatuneMaybeGetNodeset: the cell's <memnode>, else <memory>.
        let tune = s.targetNode >= 0 ? (d.memnodes[s.targetNode] ?? d.numatune) : d.numatune
        let nodes = s.sourceNodes ?? tune?.nodes ?? []
        let numad = s.sourceNodes == nil && tune != nil && tune?.nodes == nil
        // libvirt 12.0: a device's own <source><nodemask> binds strictly, whatever <numatune> says.
        let mode = s.sourceNodes != nil && host.rules >= .strictDeviceNodemask ? "strict" : (tune?.mode ?? "strict")
        // qemuNumaPolicyTypeToString: strict is QEMU's bind.
        let policy = mode == "strict" ? "bind" : mode
        // virtio-mem gets no `prealloc` property (libvirt sets it on the device, or not at all).
        let backendPrealloc = s.model == .virtioMem ? false : prealloc
        let bound = !nodes.isEmpty || numad
        let tc = backendPrealloc && threadContext(nodes: nodes, numad: numad, mode: mode, d, host) ? s.id.map { "tc-\($0)" } : nil
        var b = MemoryBackend(
            id: s.id, alias: s.alias, kind: kind, path: path, hugepageSize: hugepageSize, bytes: s.bytes, share: share,
            hostNodes: nodes, policy: bound ? policy : nil, prealloc: backendPrealloc, threadContext: tc,
            device: s.device, model: s.model, startBytes: s.startBytes)
        b.nodesFromNumad = numad
        return b
    }

    /// qemuBuildThreadContextProps, for a preallocated backend: 9.0 adds one wherever QEMU gets
    /// host-nodes (not `restrictive`). From 9.2 the nodemask counts in restrictive mode too, and is
    /// cut to the nodes of the CPUs the emulator may run on (`<emulatorpin>`, else `<vcpu cpuset>`);
    /// when nothing remains there is none.
    static func threadContext(nodes: [Int], numad: Bool, mode: String, _ d: DomainMemory, _ host: HookHost) -> Bool {
        guard !nodes.isEmpty || numad else { return false }
        guard host.rules >= LibvirtVersion(9, 2, 0) else { return mode != "restrictive" }
        guard !numad, !d.cpusFromNumad, let cpus = d.emulatorCPUs, let map = host.cpuNodes, !map.isEmpty else { return true }
        return !Set(cpus.compactMap { map[$0] }).isDisjoint(with: nodes)
    }

    /// qemuBuildMemoryGetPagesize: the device's own page size, else the `<page>` whose nodeset
    /// holds the backend's cell, else the `<page>` with no nodeset; the system page size means
    /// none, and `<hugepages/>` with no size means the default one
    /// (qemuBuildMemoryGetDefaultPagesize: the mount of the kernel's default size, else the first).
    static func pagesize(_ s: Spec, _ d: DomainMemory, _ host: HookHost) throws(PlanError) -> (UInt64, Bool, Bool) {
        var size = s.pageSize
        var use = size != 0
        if size == 0 {
            let master = d.hugepages.last { $0.cells == nil }
            let own = s.targetNode >= 0 ? d.hugepages.first { $0.cells?.contains(s.targetNode) == true } : nil
            if let page = own ?? master {
                size = page.size
                use = true
            }
        }
        if size == host.systemPageSize {
            size = 0
            use = false
        } else if use && size == 0 {
            guard let m = host.hugetlbfs.first(where: { $0.pageSize == host.defaultHugepageSize }) ?? host.hugetlbfs.first else {
                throw PlanError(description: "<hugepages/> but no hugetlbfs file system is mounted: libvirt refuses to start it")
            }
            size = m.pageSize
        }
        var prealloc = d.immediate
        if s.path != nil {
            if !s.pmem && s.model != .virtioPmem { prealloc = true }
        } else if use {
            prealloc = true
        }
        if s.model == .sgxEPC { prealloc = true }
        return (size, use, prealloc)
    }
}

extension LibvirtBackends {
    /// The machine's `defaultRAMid` from one of libvirt's QEMU capabilities cache files
    /// (`/var/cache/libvirt/qemu/capabilities/*.xml`, written by virQEMUCapsFormatCache):
    /// the file whose `<emulator>` is the domain's, its `<machine>` of the domain's name
    /// (or alias) and accelerator. nil when the file is not that emulator's or names no id.
    public static func cachedRAMId(capsXML: String, emulator: String, machine: String, virtType: String) -> String? {
        // A start waits on this and the file is ~200 KB: it is scanned in place, line by line,
        // and only the <machine> lines become Strings.
        let accel = virtType == "kvm" ? "kvm" : "tcg"
        let emulatorLine = Array("<emulator>\(emulator)</emulator>".utf8)
        var text = capsXML
        return text.withUTF8 { buf -> String? in
            var ours = false
            var start = 0
            while start < buf.count {
                var end = start
                while end < buf.count && buf[end] != UInt8(ascii: "\n") { end += 1 }
                var i = start
                while i < end && (buf[i] == UInt8(ascii: " ") || buf[i] == UInt8(ascii: "\t")) { i += 1 }
                let line = UnsafeBufferPointer(rebasing: buf[i..<end])
                if line.starts(with: "<emulator>".utf8) {
                    ours = line.elementsEqual(emulatorLine)
                    if !ours { return nil }
                } else if ours, line.starts(with: "<machine ".utf8) {
                    let tag = String(decoding: line, as: UTF8.self)
                    if DomainRewrite.attribute("type", of: tag) == accel,
                       DomainRewrite.attribute("name", of: tag) == machine || DomainRewrite.attribute("alias", of: tag) == machine {
                        return DomainRewrite.attribute("defaultRAMid", of: tag)
                    }
                }
                start = end + 1
            }
            return nil
        }
    }
}
