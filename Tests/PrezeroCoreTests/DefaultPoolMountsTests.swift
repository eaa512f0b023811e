@testable import PrezeroQemuModel
import Testing
@testable import PrezeroCore

@Suite("DefaultPoolMounts: the mounts pooled when mounts: is not set")
struct DefaultPoolMountsTests {
    let host = ["/dev/hugepages", "/dev/hugepages1G", "/var/lib/kubelet/hugepages", "/mnt/db-huge"]

    @Test func onlyWhatQemuConfNames() {
        let conf = QemuConf(memoryBackingDir: "/dev/hugepages/libvirt-ram", hugetlbfsMounts: ["/dev/hugepages1G", "/dev/hugepages/"])
        let (m, skipped) = DefaultPoolMounts.choose(conf: conf, hostMounts: host)
        #expect(m.map(\.path) == ["/dev/hugepages1G", "/dev/hugepages"], "in order, once each, never kubelet's or the database's")
        #expect(m.map(\.why) == ["hugetlbfs_mount", "hugetlbfs_mount"])
        #expect(skipped.isEmpty)
    }

    @Test func theMountUnderMemoryBackingDir() {
        let (m, skipped) = DefaultPoolMounts.choose(conf: QemuConf(memoryBackingDir: "/dev/hugepages/libvirt-ram"), hostMounts: host)
        #expect(m == [DefaultPoolMounts.Choice(path: "/dev/hugepages", why: "memory_backing_dir /dev/hugepages/libvirt-ram")])
        #expect(skipped.count == 1 && skipped[0].contains("hugetlbfs_mount is not set"), "libvirt's every-mount default is not followed")
    }

    @Test func theDeepestMountHoldsTheDirectory() {
        let (m, _) = DefaultPoolMounts.choose(conf: QemuConf(memoryBackingDir: "/dev/hugepages/inner/ram"),
                                              hostMounts: ["/dev/hugepages", "/dev/hugepages/inner", "/"])
        #expect(m.map(\.path) == ["/dev/hugepages/inner"])
    }

    @Test func nothingNamedIsNothingTaken() {
        let (m, skipped) = DefaultPoolMounts.choose(conf: QemuConf(), hostMounts: host)
        #expect(m.isEmpty)
        #expect(skipped == ["hugetlbfs_mount is not set (libvirt would then take every hugetlbfs mount; prezerod does not)"])
        let (m2, skipped2) = DefaultPoolMounts.choose(conf: QemuConf(memoryBackingDir: "/var/lib/libvirt/qemu/ram", hugetlbfsMounts: ["/nowhere"]),
                                                      hostMounts: host)
        #expect(m2.isEmpty)
        #expect(skipped2 == ["hugetlbfs_mount /nowhere is not a hugetlbfs mount", "memory_backing_dir /var/lib/libvirt/qemu/ram is not on hugetlbfs"])
    }
}
