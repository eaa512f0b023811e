import Glibc
import PrezeroCore
import PrezeroSys

/// Who holds files on a mount, read from /proc.
enum HolderScan {
    /// The result of one scan. `complete` is false when some process could not be
    /// read for a reason other than having exited: then nothing may be taken as free.
    struct Holders {
        var files: Set<FileID>
        var complete: Bool

        /// Free means: the scan saw every process, and none holds the file.
        func isFree(_ id: FileID) -> Bool { complete && !files.contains(id) }
    }

    /// Every (device, inode) on one device that some task has open (`/proc/*/task/*/fd`,
    /// which also covers threads with a file table of their own and processes whose
    /// leader has exited) or mapped (`/proc/*/task/*/maps`, read whole).
    static func scan(onDevice major: UInt32, _ minor: UInt32) -> Holders {
        var out = Holders(files: [], complete: true)
        for pid in Files.list(path: "/proc") where pid.first?.isNumber == true {
            let tasks = Files.list(path: "/proc/\(pid)/task")
            if tasks.isEmpty {
                if processExists(pid) { out.complete = false }
                continue
            }
            var sawMaps = false
            for tid in tasks {
                let base = "/proc/\(pid)/task/\(tid)"
                switch Files.listChecked(path: base + "/fd") {
                case .success(let fds):
                    for fd in fds {
                        if let s = Files.status(followingPath: "\(base)/fd/\(fd)"), s.deviceMajor == major, s.deviceMinor == minor {
                            out.files.insert(FileID(major: major, minor: minor, inode: s.inode))
                        }
                    }
                case .failure(let e):
                    if e.errno != ENOENT && e.errno != ESRCH { out.complete = false }
                }
                // Threads share one address space: one readable maps file per process is enough.
                if !sawMaps, let maps = Files.readText(base + "/maps", limit: Int.max), !maps.isEmpty {
                    sawMaps = true
                    for id in ProcParsers.mappedInodes(maps: maps) where id.major == major && id.minor == minor {
                        out.files.insert(id)
                    }
                }
            }
        }
        return out
    }

    static func processExists(_ pid: String) -> Bool {
        guard let p = Int32(pid) else { return false }
        return Processes.exists(p)
    }
}
