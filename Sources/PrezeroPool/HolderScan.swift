import Glibc
import PrezeroSys
import PrezeroCore

/// What other processes hold, read from /proc.
enum HolderScan {
    /// Every (device, inode) that some process has open (`/proc/*/fd`) or mapped (`/proc/*/maps`),
    /// restricted to one device so that the scan stays cheap.
    static func heldFiles(onDevice major: UInt32, _ minor: UInt32) -> Set<FileID> {
        var held = Set<FileID>()
        for pid in Files.list(path: "/proc") where pid.first?.isNumber == true {
            for fd in Files.list(path: "/proc/\(pid)/fd") {
                if let s = Files.status(followingPath: "/proc/\(pid)/fd/\(fd)"), s.deviceMajor == major, s.deviceMinor == minor {
                    held.insert(FileID(major: major, minor: minor, inode: s.inode))
                }
            }
            if let maps = Files.readText("/proc/\(pid)/maps") {
                for id in ProcParsers.mappedInodes(maps: maps) where id.major == major && id.minor == minor {
                    held.insert(id)
                }
            }
        }
        return held
    }

}
