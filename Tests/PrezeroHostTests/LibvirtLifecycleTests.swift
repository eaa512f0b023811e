import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroSys
import Testing

extension HostTests {
    /// The lifecycles of a handed-over domain beyond start and destroy: save and restore,
    /// managed save, reset and reboot, and a destroy that lands while `start begin` runs.
    @Suite("libvirt lifecycles: save, restore, managed save, reset, destroy", .tags(.hugePages, .qemu, .libvirt), .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct LibvirtLifecycle: HostSuite {
        @Test("virsh save + restore: the restored guest is handed a pre-zeroed file holding the saved memory; the old file is taken back")
        func libvirtSaveRestore() throws { try saveAndRestore(managed: false) }

        @Test("virsh managedsave + start: the same through libvirt's managed save image")
        func libvirtManagedSave() throws { try saveAndRestore(managed: true) }

        @Test("virsh reset and reboot keep QEMU, its lease and its mapping: no hook call, nothing taken back")
        func libvirtResetReboot() throws {
            let (pool, lv, uuid) = try lifecycleDomain("pz-e2e-reset")
            defer { lv.close(); pool.close() }
            let file = try leasedFile(pool, uuid)
            let inode = try #require(Files.status(followingPath: file)?.inode)
            let qemu = try lv.qemuPID(uuid)
            for op in ["reset", "reboot"] {
                let r = try lv.virsh(op, uuid)
                #expect(r.status == 0, "\(op): \(r.err)")
                sleepSeconds(1)
                #expect(try lv.qemuPID(uuid) == qemu, "\(op): the same QEMU")
                #expect(try leasedFile(pool, uuid) == file, "\(op): the same lease")
                #expect(lv.mappedInodes(qemu) == [inode], "\(op): QEMU maps the same file")
            }
            #expect(!pool.log().contains("stopped end: released"), "no stop was seen")
            #expect(try lv.virsh("destroy", uuid).status == 0)
            try expectTakenBack(pool, uuid, inode: inode, bytes: 256 * MiB)
        }

        @Test("virsh destroy while start begin runs: whatever libvirt does, nothing stays leased and no page is lost")
        func libvirtDestroyDuringStartBegin() throws {
            let (pool, lv) = try libvirtPool()
            defer { lv.close(); pool.close() }
            try lv.installHook(startBeginDelay: 2)
            let uuid = try lv.define(name: "pz-e2e-destroy-early", memoryMiB: 128, backing: LibvirtHost.eligible)
            let free = hostFreePages(page2M)
            let start = try Child(["virsh", "-c", "qemu:///system", "start", uuid], stdout: pool.base + "/start.out", stderr: pool.base + "/start.err")
            try waitFor("start begin to be called", timeout: 30) { FileManager.default.fileExists(atPath: lv.startBeginMarker) }
            let destroyed = try lv.virsh("destroy", uuid)
            let started = try start.wait(timeout: 60)
            let state = try lv.virsh("domstate", uuid).out.trimmingCharacters(in: .whitespacesAndNewlines)
            print("destroy during start begin: destroy exited \(destroyed.status) (\(destroyed.err.trimmingCharacters(in: .whitespacesAndNewlines))), start exited \(started), then \(state)")
            if state == "running" { #expect(try lv.virsh("destroy", uuid).status == 0) }
            try waitFor("the leases to go", timeout: 30) {
                try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").isEmpty
            }
            try pool.waitClean(128 * MiB, timeout: 60)
            #expect(hostFreePages(page2M) == free, "every page is back where it was")
        }
    }
}

extension HostSuite {
    /// The guest RAM range the lifecycle tests mark: above what SeaBIOS touches, below the end.
    static var markRange: (offset: Int, length: Int) { (64 * Int(MiB), 32 * Int(MiB)) }

    /// The domain's one leased file.
    func leasedFile(_ pool: TestPool, _ uuid: String) throws -> String {
        let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").filter { $0.hasPrefix(uuid + ".") }
        try #require(leased.count == 1, "one lease for \(uuid): \(leased)")
        return "\(pool.mount)/.prezero/leased/\(leased[0])"
    }

    /// Writes a pattern (a different byte per 2 MiB) over `markRange` of a guest's file.
    func mark(_ path: String, seed: UInt8) throws {
        let (m, _) = try FileBytes.map(path)
        defer { m.unmap() }
        for (i, off) in stride(from: Self.markRange.offset, to: Self.markRange.offset + Self.markRange.length, by: Int(page2M)).enumerated() {
            Zeroing.fill(m.base + off, Int(page2M), byte: seed &+ UInt8(truncatingIfNeeded: i))
        }
    }

    /// Whether `markRange` of a file holds exactly that pattern.
    func hasMark(_ path: String, seed: UInt8) throws -> Bool {
        let (m, _) = try FileBytes.map(path)
        defer { m.unmap() }
        for (i, off) in stride(from: Self.markRange.offset, to: Self.markRange.offset + Self.markRange.length, by: Int(page2M)).enumerated() {
            let want = seed &+ UInt8(truncatingIfNeeded: i)
            let p = (m.base + off).assumingMemoryBound(to: UInt8.self)
            for j in stride(from: 0, to: Int(page2M), by: 4096) where p[j] != want { return false }
        }
        return true
    }

    /// After a domain's QEMU is gone: no lease of it left, the file `inode` taken back and new ones clean, all zero.
    func expectTakenBack(_ pool: TestPool, _ uuid: String, inode: UInt64, bytes: UInt64) throws {
        try waitFor("\(uuid)'s leases to go", timeout: 30) {
            try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").allSatisfy { !$0.hasPrefix(uuid + ".") }
        }
        try pool.expectRecycled(inode: inode, bytes: bytes)
    }

    /// A pool of two 128 MiB files and an eligible 128 MiB domain running on one of them.
    func lifecycleDomain(_ name: String) throws -> (TestPool, LibvirtHost, String) {
        let (pool, lv) = try libvirtPool(mountSize: "288M", target: 256 * MiB, fileSize: "128M")
        let uuid = try lv.define(name: name, memoryMiB: 128, backing: LibvirtHost.eligible)
        let r = try lv.virsh("start", uuid)
        try #require(r.status == 0, "\(r.err)")
        return (pool, lv, uuid)
    }

    /// save/restore and managedsave/start: the restored guest runs on a new pre-zeroed file that
    /// holds the saved memory, and the old file is taken back.
    func saveAndRestore(managed: Bool) throws {
        let (pool, lv, uuid) = try lifecycleDomain(managed ? "pz-e2e-managedsave" : "pz-e2e-save")
        defer { lv.close(); pool.close() }
        let first = try leasedFile(pool, uuid)
        let firstInode = try #require(Files.status(followingPath: first)?.inode)
        #expect(try lv.virsh("suspend", uuid).status == 0)
        try mark(first, seed: managed ? 0x31 : 0x71)
        let image = pool.base + "/save.img"
        let saved = managed ? try lv.virsh("managedsave", uuid) : try lv.virsh("save", uuid, image)
        try #require(saved.status == 0, "\(saved.err)")
        try expectTakenBack(pool, uuid, inode: firstInode, bytes: 256 * MiB)
        let before = hostFreePages(page2M)
        let restored = managed ? try lv.virsh("start", uuid, "--paused") : try lv.virsh("restore", image, "--paused")
        try #require(restored.status == 0, "\(restored.err)")
        #expect(hostFreePages(page2M) == before, "the restore took no new page: its memory is a pool file")
        let second = try leasedFile(pool, uuid)
        #expect(lv.mappedInodes(try lv.qemuPID(uuid)) == Set([Files.status(followingPath: second)?.inode].compactMap { $0 }))
        #expect(try hasMark(second, seed: managed ? 0x31 : 0x71), "the restored guest's memory is the saved memory")
        #expect(pool.log().components(separatedBy: "pc.ram: handed over 128 MiB").count - 1 == 2, "start begin handed over at the start and at the restore")
        let secondInode = try #require(Files.status(followingPath: second)?.inode)
        #expect(try lv.virsh("destroy", uuid).status == 0)
        try expectTakenBack(pool, uuid, inode: secondInode, bytes: 256 * MiB)
    }
}
