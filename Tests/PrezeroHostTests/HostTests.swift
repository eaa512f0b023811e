import Foundation
import Glibc
import Testing

/// Every test that touches the host: real huge pages, real hugetlbfs mounts, the real
/// prezerod, and where a suite says so a real libvirtd and QEMU. One serialized suite
/// holds them all (the trait reaches every suite nested in it), because each test reads
/// the host's huge-page counters and must be alone in moving them. The suites nested in
/// it are split by concern, one per file, and tagged by what they touch; each is gated on
/// what it needs, so that `swift test` run by a user other than root runs every pure test
/// and says which host tests it left out and why. `make test` (and so `.ci/run`) runs as
/// root and fails if any test was skipped (scripts/no-skips.sh).
@Suite("on the host", .serialized, .enabled(if: HostNeeds.root, HostNeeds.rootWhy))
struct HostTests {}

/// What a host suite's tests share: the helpers in `extension HostSuite` in each file.
protocol HostSuite {}

extension Tag {
    /// Reserves huge pages and mounts hugetlbfs.
    @Tag static var hugePages: Self
    /// Starts QEMU, under KVM where /dev/kvm works and TCG where it does not.
    @Tag static var qemu: Self
    /// Starts its own libvirtd and virtlogd, with a hook and qemu.conf of its own.
    @Tag static var libvirt: Self
    /// Changes /dev/kvm's mode for the test, and puts it back.
    @Tag static var kvm: Self
    /// The chaos soak (SOAK_CYCLES).
    @Tag static var soak: Self
}

/// What the host suites need, and what to do when it is missing.
enum HostNeeds {
    static var root: Bool { getuid() == 0 }
    static let rootWhy: Comment = "needs root: it reserves huge pages, mounts hugetlbfs and runs prezerod, libvirtd and QEMU; run `make test` (as root), which also installs what they need"
    static var libvirt: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/libvirtd") && FileManager.default.isExecutableFile(atPath: "/usr/bin/virsh") }
    static let libvirtWhy: Comment = "needs libvirtd and virsh (/usr/sbin/libvirtd, /usr/bin/virsh): run `make deps`"
    static var qemu: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64") }
    static let qemuWhy: Comment = "needs QEMU (/usr/bin/qemu-system-x86_64): run `make deps`"
}
