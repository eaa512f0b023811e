import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys
import Testing

/// The repository's examples/ directory.
let examplesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("examples").path

/// Child PIDs of a process.
func childPIDs(_ pid: Int32) -> [Int32] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
    return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

extension HostTests {
    /// Every example in examples/ is run here.
    @Suite("examples/: each one run as its README says", .tags(.hugePages, .qemu, .libvirt), .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct Examples: HostSuite {
        @Test("examples/qemu-direct: QEMU runs on the pool's file with no new pages, and the file is taken back after")
        func qemuDirectExample() throws {
            let pool = try launchPool()
            defer { pool.close() }
            let before = hostFreePages(page2M)
            let (launcher, _) = try startQemuDirect(pool)
            defer { stopLauncher(launcher) }
            let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased")
            #expect(leased == ["launch.\(launcher.pid).m0~n0-134217728-1"], "\(launchLog(pool))")
            let leasedPath = "\(pool.mount)/.prezero/leased/\(leased.first ?? "")"
            let inode = Files.status(followingPath: leasedPath)?.inode
            let qemu = childPIDs(launcher.pid)
            #expect(qemu.count == 1)
            let maps = (try? String(contentsOfFile: "/proc/\(qemu.first ?? 0)/maps", encoding: .utf8)) ?? ""
            #expect(maps.split(separator: "\n").contains { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first == "\(inode ?? 0)" },
                    "QEMU maps the leased file")
            #expect(hostFreePages(page2M) == before, "no new huge pages across QEMU's start")
            #expect(Files.status(followingPath: leasedPath)?.links == 1, "the file is linked nowhere but the pool")
            #expect(launchLog(pool).contains("m0: 128 MiB pre-zeroed on node 0 (hit)"))
            try FileBytes.fill(leasedPath, byte: 0x5A)
            // SIGTERM to prezero launch reaches QEMU, which shuts down; then the release.
            launcher.signal(SIGTERM)
            #expect(try launcher.wait(timeout: 60) == 0, "\(launchLog(pool))")
            try pool.expectRecycled(inode: inode ?? 0, bytes: 128 * MiB, timeout: 30)
            #expect(hostFreePages(page2M) == before)
        }

        @Test("prezero launch killed with SIGKILL: once QEMU is gone too, prezerod takes the file back by itself")
        func launchKilled() throws {
            let pool = try launchPool()
            defer { pool.close() }
            let (launcher, _) = try startQemuDirect(pool)
            defer { stopLauncher(launcher) }
            let qemu = childPIDs(launcher.pid)
            #expect(qemu.count == 1)
            launcher.signal(SIGKILL)
            _ = try launcher.wait(timeout: 10)
            // QEMU still runs and holds the file: it stays leased.
            sleepSeconds(0.5)
            #expect(try pool.node0().leasedBytes == 128 * MiB)
            for p in qemu { kill(p, SIGKILL) }
            try waitFor("QEMU to exit", timeout: 20) { qemu.allSatisfy { !LibvirtHost.alive($0) } }
            try pool.waitClean(128 * MiB, timeout: 30)
            #expect(try pool.node0().leasedBytes == 0)
            #expect(pool.log().contains("lease launch.\(launcher.pid).m0 taken back"))
        }

        @Test("prezero launch on a miss: QEMU still starts, on a file of its own, and nothing is left behind")
        func launchMiss() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 0", mountOptions: "size=160M")
            defer { pool.close() }
            try pool.start()
            let before = hostFreePages(page2M)
            let (launcher, _) = try startQemuDirect(pool)
            defer { stopLauncher(launcher) }
            #expect(launchLog(pool).contains("m0: 128 MiB, no pre-zeroed file (miss)"), "\(launchLog(pool))")
            #expect(before - hostFreePages(page2M) == 64, "QEMU allocated its own 64 pages")
            launcher.signal(SIGINT)
            #expect(try launcher.wait(timeout: 60) == 0, "\(launchLog(pool))")
            #expect(hostFreePages(page2M) == before, "QEMU's unlinked file went with it")
            #expect(try FileManager.default.contentsOfDirectory(atPath: pool.mount).filter { !$0.hasPrefix(".") }.isEmpty)
        }

        @Test("prezero launch: bad usage is one line and exit 2; --json-claims; the VMM's status; nothing left claimed")
        func launchBadUsage() throws {
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 8M\nfile_size: 8M")
            defer { pool.close() }
            try pool.start()
            try pool.waitClean(8 * MiB)
            let snap = pool.shape()
            for (args, says) in [
                (["--memory", "m0=3M", "--", "true", "{prezero:m0}"], "not a whole number of 2 MiB pages"),
                (["--memory", "m0=8M", "--", "true"], "--memory m0 is not used"),
                (["--memory", "m0=8M", "--", "true", "{prezero:m0}", "{prezero:m1}"], "{prezero:m1} in the VMM's arguments has no --memory m1"),
                (["--memory", "m 0=8M", "--", "true"], "may hold only letters"),
                (["--memory", "m0=8M@x", "--", "true", "{prezero:m0}"], "is not a node list"),
                (["--memory", "m0=8M"], "give the VMM command after --"),
            ] {
                let r = try run([Binaries.prezero, "launch", "--socket", pool.socket] + args)
                #expect(r.status == 2, "\(args)")
                #expect(r.err.contains(says), "\(args): \(r.err)")
            }
            // The happy path with a VMM that exits at once: --json-claims, its exit status, the release.
            let claims = pool.base + "/claims.json"
            let ok = try run([Binaries.prezero, "launch", "--socket", pool.socket, "--memory", "m0=8M", "--json-claims", claims,
                              "--", "sh", "-c", "test -e {prezero:m0} && exit 7"])
            #expect(ok.status == 7, "the VMM's own exit status: \(ok.err)")
            let json = (try? String(contentsOfFile: claims, encoding: .utf8)) ?? ""
            #expect(json.contains("\"outcome\" : \"hit\"") && json.contains("\"name\" : \"m0\"") && json.contains("\"path\" : \"/proc/self/fd/"), "\(json)")
            let missing = try run([Binaries.prezero, "launch", "--socket", pool.socket, "--memory", "m0=8M", "--", "/nonexistent/vmm", "{prezero:m0}"])
            #expect(missing.status == 127 && missing.err.contains("cannot start /nonexistent/vmm"), "\(missing.err)")
            try pool.waitClean(8 * MiB, timeout: 30)
            #expect(pool.shape() == snap, "nothing claimed is left behind, and the pool is whole again")
        }

        @Test("examples/libvirt: the eligible domain and qemu.conf line start handed over and are taken back")
        func libvirtExample() throws {
            let (pool, lv) = try libvirtPool()
            defer { lv.close(); pool.close() }
            let uuid = try defineExample("libvirt", lv)
            try roundTrip(uuid, pool, lv)
            #expect(pool.log().contains("handed over 128 MiB"))
        }

        @Test("examples/openstack-nova: Nova's file-backed form with <discard/> is handed over; QEMU punches its file at exit and it is taken back")
        func novaExample() throws {
            let (pool, lv) = try libvirtPool()
            defer { lv.close(); pool.close() }
            let uuid = try defineExample("openstack-nova", lv)
            #expect(try roundTrip(uuid, pool, lv) == 0, "QEMU punched every page at exit: the take-back found none to give back")
        }

        @Test("examples/prezerod.yaml: as shipped (all defaults, the mounts from qemu.conf) and with every key uncommented, prezerod --check-config accepts it")
        func prezerodYamlExample() throws {
            let pool = try TestPool()
            defer { pool.close() }
            let text = try String(contentsOfFile: examplesDir + "/prezerod.yaml", encoding: .utf8)
            // As shipped, with a qemu.conf that puts libvirt's guest memory on the test's mount (the
            // host's own qemu.conf may name none: then prezerod refuses, naming mounts:).
            let qemuConf = pool.base + "/qemu.conf"
            try "memory_backing_dir = \"\(pool.mount)/libvirt-ram\"\n".write(toFile: qemuConf, atomically: true, encoding: .utf8)
            let asShipped = pool.base + "/shipped.yaml"
            try (text + "\nqemu_conf: \(qemuConf)\n").write(toFile: asShipped, atomically: true, encoding: .utf8)
            let shipped = try run([Binaries.prezerod, "--check-config", "--config", asShipped])
            #expect(shipped.status == 0 && shipped.out.contains("1 pool mount(s)"), "\(shipped.err)")
            // Past the header, every commented line is a key at its default: uncomment them all.
            let body = text.components(separatedBy: "\n\n").dropFirst().joined(separator: "\n\n")
            let every = body.split(separator: "\n").map { $0.hasPrefix("# ") ? String($0.dropFirst(2)) : String($0) }
                .joined(separator: "\n").replacingOccurrences(of: "/dev/hugepages", with: pool.mount)
            #expect(every.contains("fill_bandwidth:") && every.contains("refill_delay_ms: 2000"))
            let file = pool.base + "/every-key.yaml"
            try every.write(toFile: file, atomically: true, encoding: .utf8)
            let all = try run([Binaries.prezerod, "--check-config", "--config", file])
            #expect(all.status == 0, "every documented key is a real one: \(all.err)")
        }
    }
}

extension HostSuite {
    /// examples/qemu-direct/run.sh with this test's prezerod, binaries and a 128 MiB guest.
    func startQemuDirect(_ pool: TestPool, size: String = "128M", pageSize: String? = nil) throws -> (launcher: Child, qmp: String) {
        let qmp = pool.base + "/qemu.qmp"
        var env = ["PATH": "\(Binaries.dir):/usr/bin:/bin:/usr/sbin:/sbin", "SIZE": size, "QMP": qmp, "PREZERO_SOCKET": pool.socket]
        if let pageSize { env["PAGE_SIZE"] = pageSize }
        if let a = Environment.value("PREZERO_ACCEL") { env["PREZERO_ACCEL"] = a }
        let launcher = try Child(["/bin/sh", examplesDir + "/qemu-direct/run.sh"], stdout: pool.base + "/launch.out",
                                 stderr: pool.base + "/launch.err", env: env)
        guard QMP.waitReady(socket: qmp, timeout: 60, alive: { launcher.isRunning }) else {
            throw TestFailure("QEMU did not answer query-status: \((try? String(contentsOfFile: pool.base + "/launch.err", encoding: .utf8)) ?? "")")
        }
        return (launcher, qmp)
    }

    /// A pool holding one 128 MiB file, with no refill under a test, on a mount capped at `mountSize`.
    func launchPool(mountSize: String = "160M") throws -> TestPool {
        let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 600000\nreclaim_interval_ms: 100",
                                mountConfig: "target: 128M\nfile_size: 128M", mountOptions: "size=\(mountSize)")
        try pool.start()
        try pool.waitClean(128 * MiB)
        return pool
    }

    /// A launcher the test gave up on: its VMM first (it would outlive it), then itself.
    func stopLauncher(_ launcher: Child) {
        for p in childPIDs(launcher.pid) { kill(p, SIGKILL) }
        launcher.signal(SIGKILL)
        _ = try? launcher.wait(timeout: 10)
    }

    func launchLog(_ pool: TestPool) -> String { (try? String(contentsOfFile: pool.base + "/launch.err", encoding: .utf8)) ?? "" }

    /// Defines a domain from an example's domain.xml, after checking that the example's
    /// qemu.conf line is the one this test's libvirt runs with (its mount for /dev/hugepages).
    func defineExample(_ dir: String, _ lv: LibvirtHost) throws -> String {
        let conf = try String(contentsOfFile: "\(examplesDir)/\(dir)/qemu.conf", encoding: .utf8)
        let line = conf.split(separator: "\n").first { $0.hasPrefix("memory_backing_dir") }.map(String.init) ?? ""
        #expect(line.replacingOccurrences(of: "/dev/hugepages", with: lv.pool.mount) == "memory_backing_dir = \"\(lv.backingDir)\"")
        let xml = try String(contentsOfFile: "\(examplesDir)/\(dir)/domain.xml", encoding: .utf8)
        let uuid = try #require(xml.components(separatedBy: "<uuid>").dropFirst().first?.components(separatedBy: "</uuid>").first)
        // As shipped but for the accelerator: kvm where QEMU can use it (the example's README says so).
        #expect(xml.hasPrefix("<domain type='kvm'>"))
        let file = lv.pool.base + "/\(dir)-domain.xml"
        try xml.replacingOccurrences(of: "<domain type='kvm'>", with: "<domain type='\(LibvirtHost.accel.domainType)'>")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = try lv.virsh("define", file)
        guard r.status == 0 else { throw TestFailure("virsh define: \(r.err)") }
        lv.domains.append(uuid)
        return uuid
    }

    /// Starts an example domain: handed over with no new pages; destroyed; back in the pool, zero.
    /// Returns the recycled bytes the take-back counted (what QEMU had not punched itself).
    @discardableResult
    func roundTrip(_ uuid: String, _ pool: TestPool, _ lv: LibvirtHost) throws -> UInt64 {
        let before = hostFreePages(page2M)
        let r = try lv.virsh("start", uuid)
        #expect(r.status == 0, "\(r.err)")
        #expect(hostFreePages(page2M) == before, "no new huge pages across virsh start")
        let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased")
        #expect(leased == ["\(uuid).pc.ram~n0-134217728-1"])
        let inode = Files.status(followingPath: "\(pool.mount)/.prezero/leased/\(leased.first ?? "")")?.inode
        #expect(lv.mappedInodes(try lv.qemuPID(uuid)) == Set([inode].compactMap { $0 }))
        try FileBytes.fill("\(pool.mount)/.prezero/leased/\(leased.first ?? "")", byte: 0x6B)
        #expect(try lv.virsh("destroy", uuid).status == 0)
        try pool.expectRecycled(inode: inode ?? 0, bytes: 128 * MiB, timeout: 30)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/clean").count == 1)
        #expect(hostFreePages(page2M) == before, "every page is back in the pool")
        return try pool.node0().recycledBytes
    }
}
