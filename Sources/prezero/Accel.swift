import ArgumentParser
import Foundation
import PrezeroClient
import PrezeroCore
import PrezeroQemuModel

/// `prezero accel`: which accelerator QEMU gets here, and why. The demo, the benches,
/// the tests, the examples and the NUMA guests all use this answer.
struct Accel: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the accelerator QEMU gets on this host: kvm or tcg, and why.",
        discussion: """
            kvm when /dev/kvm exists, opens, and its owner, group and mode let QEMU's user open it \
            read-write; tcg otherwise. With --libvirt, QEMU's user is qemu.conf's `user` \
            (libvirt-qemu when unset); without, it is the user running this command, as for a QEMU \
            started directly. PREZERO_ACCEL=tcg forces tcg. The first line is `accel: kvm` or \
            `accel: tcg`. When /dev/kvm works but QEMU's user cannot open it, libvirt re-probes QEMU's \
            capabilities at every start; the fix is printed: \(AccelDecision.udevFix).
            """)

    @Flag(name: .long, help: "Decide for QEMU started by libvirt (as qemu.conf's user).")
    var libvirt = false
    @Flag(name: .long, help: "Decide for a guest that boots a Linux kernel, not only firmware (kvm_pvm hosts give it TCG).")
    var bootsKernel = false
    @Option(name: .long, help: "libvirt's qemu.conf, for --libvirt.")
    var qemuConf = "/etc/libvirt/qemu.conf"
    @Flag(name: .long, help: "Print the decision as JSON.")
    var json = false

    func run() throws {
        let d = libvirt ? HostAccelerator.forLibvirt(qemuConf: qemuConf, bootsKernel: bootsKernel) : HostAccelerator.forDirectQEMU(bootsKernel: bootsKernel)
        if json {
            printJSON(d)
            return
        }
        print("accel: \(d.accel.rawValue)")
        print("  \(d.reason)" + (d.fix.map { "; fix: \($0)" } ?? ""))
    }
}
