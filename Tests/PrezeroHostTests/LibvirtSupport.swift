import Foundation
import Glibc
import PrezeroLab
import PrezeroLibvirtModel
import Testing

/// The tests' libvirt is the lab's (PrezeroLab): a real libvirtd + virtlogd pointed at a test
/// pool with a private hook, undone by `close()`.
typealias LibvirtHost = LabLibvirt

extension LabLibvirt {
    /// The test guest (`GuestDomain`), defined; returns its UUID.
    func define(name: String, uuid: String = UUID().uuidString.lowercased(), memoryMiB: Int, backing: String, cells: String = "",
                numatune: String = "", vcpus: Int = 1, extra: String = "") throws -> String {
        var d = GuestDomain(name: name, uuid: uuid, memoryKiB: UInt64(memoryMiB) << 10, backing: backing)
        d.cells = cells
        d.numatune = numatune
        d.vcpus = vcpus
        d.extra = extra
        return try define(d)
    }

    static let eligible = GuestDomain.Backing.prezero
    static func alive(_ pid: Int32) -> Bool { Daemons.alive(pid) }
    static func pid(_ file: String) -> Int32? { Daemons.pid(file: file) }
    static func stop(_ pid: Int32, grace: Double = 10) { Daemons.stop(pid, grace: grace) }

}
