import PrezeroClient
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

/// The whole private environment, made in one call and undone in one: huge pages reserved,
/// a private mount and prezerod filled to its target, `/dev/kvm` given udev's mode where
/// libvirt's QEMU user needs it, and libvirt pointed at the pool with the hook installed.
/// `prezero lab run` wraps a command in it; the host tests build on its parts.
public final class Lab {
    public struct Options: Sendable {
        /// Huge pages to reserve, each size's want (1 GiB pages are reserved first).
        public var reserve: [HugePageReservation.Want] = []
        /// A pool of this page size, with `mountConfig` under its mount and `config` beside it; nil: none.
        public var pool: PoolOptions?
        /// libvirt pointed at the pool, with this hook; nil: libvirt untouched.
        public var libvirt: LabLibvirt.Hook?
        /// `/dev/kvm` given udev's mode for the run where libvirt's QEMU user needs it.
        public var kvm = false
        public init() {}
    }

    public struct PoolOptions: Sendable {
        public var pageSize: UInt64 = 2 << 20
        /// Per-node target and file size, as prezerod.yaml spells them (`2G`, `512M`).
        public var target: String
        public var fileSize: String
        public var refillDelayMs = 1000
        public init(pageSize: UInt64, target: String, fileSize: String) {
            self.pageSize = pageSize
            self.target = target
            self.fileSize = fileSize
        }
    }

    public let bin: String
    public private(set) var reserved: [UInt64: UInt64] = [:]
    public private(set) var pool: LabPool?
    public private(set) var libvirt: LabLibvirt?
    var grantedKvm = false
    var reservedPages = false

    /// Makes everything `options` asks for, printing one line per step on `say`; on any
    /// failure undoes what it made and throws.
    public init(bin: String, options: Options, say: (String) -> Void) throws {
        self.bin = bin
        do {
            if !options.reserve.isEmpty {
                reservedPages = true
                reserved = try HugePageReservation.reserve(options.reserve).got
                say("hugepages: " + reserved.sorted { $0.key > $1.key }.map { "\($0.value) x \(ByteSize.format($0.key))" }.joined(separator: ", ")
                    + " reserved for this run")
            }
            if let p = options.pool {
                let pool = try LabPool(
                    bin: bin, pageSize: p.pageSize,
                    config: """
                        min_free: 0
                        refill_delay_ms: \(p.refillDelayMs)
                        # Long enough for a stock guest to preallocate the pages make-room freed for it,
                        # short enough that a bench round does not wait the default 30 s for the refill.
                        make_room_hold_s: 5
                        """,
                    mountConfig: "target: \(p.target)\nfile_size: \(p.fileSize)")
                self.pool = pool
                try pool.start(logLevel: "debug")
                say("prezerod: on \(pool.mount), filling to \(p.target) in files of \(p.fileSize); log \(pool.logPath)")
                try pool.settle()
            }
            if options.kvm || options.libvirt != nil {
                grantedKvm = true
                if let line = try KvmAccess.grant(qemuConf: LabLibvirt.qemuConf).changed { say(line) }
            }
            if let hook = options.libvirt {
                guard let pool else { throw LabError("libvirt needs a pool") }
                libvirt = try LabLibvirt(pool: pool, hook: hook, hugetlbfsMount: pool.mount)
                say("libvirt: memory_backing_dir and hugetlbfs_mount on \(pool.mount), hook \(libvirt?.hookPath ?? LabLibvirt.hooksDir + "/prezero (installed)")")
            }
        } catch {
            close(say: say)
            throw error
        }
    }

    /// Undoes everything, in reverse: libvirt, the pool, `/dev/kvm`'s mode, the huge pages.
    /// Each step runs whatever the one before it did.
    public func close(say: (String) -> Void) {
        libvirt?.close()
        libvirt = nil
        pool?.close()
        pool = nil
        if grantedKvm {
            grantedKvm = false
            do { if let line = try KvmAccess.restore() { say(line) } } catch { say("\(error)") }
        }
        if reservedPages {
            reservedPages = false
            do { try HugePageReservation.restore() } catch { say("hugepages: cannot restore the counts saved in \(HugePageReservation.savedPath): \(error)") }
        }
    }

    /// What a command run in the lab is told, as environment variables.
    public var environment: [String: String] {
        var env = ["PREZERO_LAB_BIN": bin]
        if let pool {
            env["PREZERO_LAB_DIR"] = pool.base
            env["PREZERO_LAB_MOUNT"] = pool.mount
            env["PREZERO_LAB_SOCKET"] = pool.socket
            env["PREZERO_LAB_LOG"] = pool.logPath
            env["PREZERO_LAB_PAGE_SIZE"] = String(pool.pageSize)
            env["PREZERO_LAB_PAGES"] = String(reserved[pool.pageSize] ?? HugePageCounters.host(pageSize: pool.pageSize)?.total ?? 0)
        }
        return env
    }
}
