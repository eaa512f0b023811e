import Foundation
import Glibc
import PrezeroClient
import PrezeroCore
import PrezeroHookHandler
import PrezeroHost
import PrezeroLibvirtModel
import PrezeroPool
import PrezeroQemuModel
import PrezeroSys
import PrezeroLab
import Testing

extension HostTests {
    /// Domain shapes beyond our own fixtures, against a real libvirtd 9.0: the plan must be the
    /// command line libvirt builds (`virsh domxml-to-native qemu-argv`), and the shapes that
    /// prezero serves must start on pre-zeroed files.
    @Suite("libvirt's domain shapes: the plan is the argv libvirt builds", .tags(.hugePages, .qemu, .libvirt), .enabled(if: HostNeeds.libvirt, HostNeeds.libvirtWhy), .enabled(if: HostNeeds.qemu, HostNeeds.qemuWhy))
    struct LibvirtShapes: HostSuite {
        @Test("the plan of every shape is the command line the running libvirt builds (domxml-to-native), by its version's rules, with qemu.conf read as libvirt reads it")
        func libvirtPlanIsTheArgv() throws {
            try #require(FileManager.default.fileExists(atPath: "/sys/kernel/mm/hugepages/hugepages-1048576kB"), "the kernel has 1 GiB pages")
            let pool = try TestPool(config: "min_free: 0", mountConfig: "target: 0")
            // A 1 GiB mount beside the 2 MiB pool, there before libvirtd starts (libvirt finds mounts then).
            let giga = pool.base + "/huge1g"
            try FileManager.default.createDirectory(atPath: giga, withIntermediateDirectories: true)
            #expect(try run(["/bin/mount", "-t", "hugetlbfs", "-o", "pagesize=1G", "none", giga]).status == 0)
            defer { _ = try? run(["/bin/umount", giga]) }
            let lv = try LibvirtHost(pool: pool, hook: .none)
            defer { lv.close(); pool.close() }
            // A second memory_backing_dir, single-quoted: libvirt takes the first (virConfGetValue).
            var conf = try String(contentsOfFile: LibvirtHost.qemuConf, encoding: .utf8)
            conf += "memory_backing_dir = '\(giga)/not-this-one'\n"
            try conf.write(toFile: LibvirtHost.qemuConf, atomically: true, encoding: .utf8)
            try lv.restartLibvirtd()

            let twoCells = "<cell id='0' cpus='0' memory='131072' unit='KiB'/><cell id='1' cpus='1' memory='131072' unit='KiB'/>"
            let shapes: [(String, String)] = [
                ("file-shared", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: LibvirtHost.eligible)),
                ("access-shared-alone", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<access mode='shared'/>")),
                ("access-private-alone", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<access mode='private'/>")),
                ("vhost-user-cells", Self.shapeXML(name: "pz-shape", memoryMiB: 384, backing: "", cells: """
                    <cell id='0' cpus='0' memory='131072' unit='KiB' memAccess='shared'/><cell id='1' cpus='1' memory='131072' unit='KiB' memAccess='private'/>\
                    <cell id='2' cpus='2' memory='131072' unit='KiB'/>
                    """, vcpus: 3)),
                ("per-node-page-sizes", Self.shapeXML(name: "pz-shape", memoryMiB: 4096, backing: """
                    <hugepages><page size='2048' nodeset='1'/><page size='1048576' nodeset='0,2-3'/></hugepages><source type='file'/>
                    """, cells: (0..<4).map { "<cell id='\($0)' cpus='\($0)' memory='1' unit='GiB'/>" }.joined(), vcpus: 4)),
                ("page-for-some-cells", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<hugepages><page size='2048' nodeset='1'/></hugepages>", cells: twoCells)),
                ("page-4k", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<hugepages><page size='4' unit='KiB'/></hugepages>")),
                ("hugepages-default", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<hugepages/><allocation mode='immediate' threads='2'/>",
                                                    numatune: "<numatune><memory mode='interleave' nodeset='0'/></numatune>")),
                ("memfd-hugetlb", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: "<source type='memfd'/><access mode='shared'/><hugepages/>")),
                ("restrictive", Self.shapeXML(name: "pz-shape", memoryMiB: 256, backing: LibvirtHost.eligible,
                                              numatune: "<numatune><memory mode='restrictive' nodeset='0'/></numatune>")),
                ("dimms", Self.shapeXML(name: "pz-shape", memoryMiB: 1280, maxMemory: "<maxMemory slots='4' unit='GiB'>8</maxMemory>",
                                        backing: LibvirtHost.eligible,
                                        numatune: "<numatune><memnode cellid='1' mode='preferred' nodeset='0'/></numatune>", cells: twoCells, devices: """
                    <memory model='dimm'><target><size unit='MiB'>512</size><node>1</node></target></memory>\
                    <memory model='dimm' access='private'><source><pagesize unit='KiB'>2048</pagesize><nodemask>0</nodemask></source><target><size unit='MiB'>256</size><node>0</node></target></memory>\
                    <memory model='virtio-mem'><target><size unit='MiB'>256</size><node>0</node><block unit='KiB'>2048</block><requested unit='MiB'>128</requested></target></memory>\
                    <memory model='nvdimm'><source><path>\(pool.base)/nvdimm0</path></source><target><size unit='MiB'>128</size><node>0</node></target></memory>
                    """)),
            ]
            for (shape, xml) in shapes {
                let file = pool.base + "/\(shape).xml"
                try xml.write(toFile: file, atomically: true, encoding: .utf8)
                let r = try lv.virsh("domxml-to-native", "qemu-argv", file)
                try #require(r.status == 0, "\(shape): \(r.err)")
                let d = try DomainXML.parse(xml)
                let host = try HostDiscovery.hookHost(qemuConf: LibvirtHost.qemuConf, domain: d,
                                                      poolMounts: [HookHost.Mount(path: pool.mount, pageSize: page2M)]).1
                #expect(host.memoryBackingDir == lv.backingDir, "the first memory_backing_dir wins")
                let plan = try HookPlanner.plan(d, host: host)
                Self.expectPlanIsArgv(plan, try Self.backendObjects(r.out), shape: shape)
            }
        }

        @Test("a vhost-user-style guest (memAccess='shared' cell, no <source>) is handed over")
        func libvirtSharedCellWithoutSource() throws {
            let (pool, lv) = try libvirtPool()
            defer { lv.close(); pool.close() }
            let uuid = try lv.define(name: "pz-e2e-vhost", memoryMiB: 128, backing: "<allocation mode='immediate'/>",
                                     cells: "<numa><cell id='0' cpus='0' memory='131072' unit='KiB' memAccess='shared'/></numa>")
            let before = hostFreePages(page2M)
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            #expect(hostFreePages(page2M) == before, "no new 2 MiB page across virsh start")
            try expectHandedOver(pool, lv, uuid, aliases: ["ram-node0"])
            #expect(try lv.virsh("destroy", uuid).status == 0)
            try pool.waitClean(128 * MiB, timeout: 30)
        }

        @Test("a cold-plugged DIMM is handed over beside its cell: one pool file each, at dimm0 and ram-node0")
        func libvirtColdPluggedDIMM() throws {
            let (pool, lv) = try libvirtPool(mountSize: "288M", target: 256 * MiB, fileSize: "128M")
            defer { lv.close(); pool.close() }
            let xml = Self.shapeXML(name: "pz-e2e-dimm", memoryMiB: 256, maxMemory: "<maxMemory slots='2' unit='MiB'>1024</maxMemory>",
                                    backing: LibvirtHost.eligible, cells: "<cell id='0' cpus='0-1' memory='131072' unit='KiB'/>",
                                    devices: "<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target></memory>")
            let uuid = try lv.defineXML(xml)
            let before = hostFreePages(page2M)
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            #expect(hostFreePages(page2M) == before, "no new 2 MiB page across virsh start")
            try expectHandedOver(pool, lv, uuid, aliases: ["dimm0", "ram-node0"])
            #expect(pool.log().contains("memdimm0 (dimm dimm0, 128 MiB): hand-over"))
            #expect(try lv.virsh("destroy", uuid).status == 0)
            try pool.waitClean(256 * MiB, timeout: 30)
        }

        @Test("one guest mixes all three: a 1 GiB-page cell made room for, a shared cell handed over, a plain cell left alone")
        func libvirtMixedPageSizes() throws {
            try #require(hostFreePages(GiB) >= 1, "make test reserves two 1 GiB pages before any 2 MiB page")
            let (pool, lv) = try libvirtPool(mountSize: "96M", target: 64 * MiB, fileSize: "64M")
            defer { lv.close(); pool.close() }
            let giga = pool.base + "/huge1g"
            try FileManager.default.createDirectory(atPath: giga, withIntermediateDirectories: true)
            #expect(try run(["/bin/mount", "-t", "hugetlbfs", "-o", "pagesize=1G", "none", giga]).status == 0)
            defer { _ = try? run(["/bin/umount", giga]) }
            try lv.restartLibvirtd()
            let xml = Self.shapeXML(name: "pz-e2e-mixed", memoryMiB: 1152, backing: "<hugepages><page size='1' unit='GiB' nodeset='0'/></hugepages>",
                                    cells: """
                                        <cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='1' cpus='1' memory='64' unit='MiB' memAccess='shared'/>\
                                        <cell id='2' cpus='2' memory='64' unit='MiB'/>
                                        """, vcpus: 3)
            let uuid = try lv.defineXML(xml)
            let (free2M, free1G) = (hostFreePages(page2M), hostFreePages(GiB))
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            try expectHandedOver(pool, lv, uuid, aliases: ["ram-node1"])
            #expect(hostFreePages(GiB) == free1G - 1, "QEMU took its one 1 GiB page itself")
            #expect(hostFreePages(page2M) == free2M, "the plain cell took no huge page, the shared one came from the pool")
            let log = pool.log()
            #expect(log.contains("ram-node0 (cell 0, 1 GiB): make-room"))
            #expect(log.contains("ram-node1 (cell 1, 64 MiB): hand-over"))
            #expect(log.contains("ram-node2 (cell 2, 64 MiB): nothing"))
            #expect(try lv.virsh("destroy", uuid).status == 0)
            try pool.waitClean(64 * MiB, timeout: 30)
            #expect(hostFreePages(GiB) == free1G)
        }

        @Test("prezero libvirt plan --xml --qemu-conf is pure: JSON v1 in bytes, and bad input exits 2 with one line")
        func libvirtPlanCLI() throws {
            let dir = NSTemporaryDirectory() + "prezero-plan-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "memory_backing_dir = '/dev/hugepages/libvirt-ram'\n".write(toFile: "\(dir)/q.conf", atomically: true, encoding: .utf8)
            try "memory_backing_dir = \"/dev/hugepages/libvirt-ram\n".write(toFile: "\(dir)/bad.conf", atomically: true, encoding: .utf8)
            let xml = Self.shapeXML(name: "pz-plan", memoryMiB: 4096, backing: "", cells: """
                <cell id='0' cpus='0' memory='2' unit='GiB' memAccess='shared'/><cell id='1' cpus='1' memory='2' unit='GiB' memAccess='private'/>
                """)
            try xml.write(toFile: "\(dir)/d.xml", atomically: true, encoding: .utf8)
            let plan = "\(Binaries.dir)/prezero"
            let r = try run([plan, "libvirt", "plan", "--xml", "\(dir)/d.xml", "--qemu-conf", "\(dir)/q.conf", "--pool-mount", "/dev/hugepages=2M", "--json"])
            #expect(r.status == 0, "\(r.err)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            #expect(json["v"] as? Int == 1)
            let domain = try #require(json["domain"] as? [String: Any])
            #expect(domain["id"] is NSNull && domain["name"] as? String == "pz-plan", "every key is there, null where it does not apply")
            #expect(Set(try #require(json["backends"] as? [[String: Any]]).first?.keys ?? [:].keys) == [
                "id", "type", "device", "alias", "path", "path_kind", "bytes", "start_bytes", "page_size", "share", "shared",
                "host_nodes", "nodes_from_numad", "policy", "prealloc", "thread_context", "decision", "reason"])
            #expect(Set(domain.keys) == ["name", "uuid", "id", "machine", "libvirt"])
            let backends = try #require(json["backends"] as? [[String: Any]])
            #expect(backends.map { $0["decision"] as? String } == ["hand-over", "make-room"])
            #expect(backends.map { ($0["bytes"] as? NSNumber)?.uint64Value } == [2 * GiB, 2 * GiB])
            #expect(backends.map { ($0["page_size"] as? NSNumber)?.uint64Value } == [page2M, page2M])
            #expect(backends.first?["path"] as? String == "/dev/hugepages/libvirt-ram/libvirt/qemu/-1-pz-plan/ram-node0")
            let room = try #require(json["make_room"] as? [[String: Any]])
            #expect(room.count == 1 && (room.first?["pages"] as? NSNumber)?.intValue == 1024 && room.first?["node"] is NSNull)
            #expect(room.first?["every_node"] as? Bool == false)
            let bad = try run([plan, "libvirt", "plan", "--xml", "\(dir)/d.xml", "--qemu-conf", "\(dir)/bad.conf", "--pool-mount", "/dev/hugepages=2M"])
            #expect(bad.status == 2)
            #expect(bad.out.isEmpty && bad.err.split(separator: "\n").count == 1 && bad.err.contains("unterminated string"), "\(bad.err)")
        }

        /// qemu.conf edited after libvirtd read it, into a form libvirt cannot parse: the hook says so
        /// in one line and the domain starts as it would without prezero.
        @Test("a qemu.conf with an unterminated quote: one log line naming it, no hand-over, the domain starts")
        func libvirtUnparsableQemuConf() throws {
            let (pool, lv) = try libvirtPool(mountSize: "320M")
            defer { lv.close(); pool.close() }
            let uuid = try lv.define(name: "pz-e2e-badconf", memoryMiB: 128, backing: LibvirtHost.eligible)
            // A memory_backing_dir line, so that a test run that dies leaves nothing reapStale misses.
            var conf = try String(contentsOfFile: LibvirtHost.qemuConf, encoding: .utf8)
            conf += "memory_backing_dir = \"\(lv.backingDir)\n"
            try conf.write(toFile: LibvirtHost.qemuConf, atomically: true, encoding: .utf8)
            let r = try lv.virsh("start", uuid)
            #expect(r.status == 0, "\(r.err)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").isEmpty)
            let lines = pool.log().split(separator: "\n").filter { $0.contains("unterminated string") }
            #expect(lines.count == 1 && lines[0].contains("\(LibvirtHost.qemuConf): qemu.conf line") && lines[0].contains("the domain is left to libvirt"),
                    "\(pool.log().suffix(2000))")
            #expect(try lv.virsh("destroy", uuid).status == 0)
        }
    }
}

extension HostSuite {
    /// A defined-domain XML with the parts a shape varies; it needs no disk. ACPI, because
    /// QEMU refuses a pc-dimm without it ("memory hotplug is not enabled").
    static func shapeXML(name: String, memoryMiB: Int, maxMemory: String = "", backing: String, numatune: String = "",
                         cells: String = "", devices: String = "", vcpus: Int = 2) -> String {
        var d = GuestDomain(name: name, memoryKiB: UInt64(memoryMiB) << 10, backing: backing)
        d.maxMemory = maxMemory
        d.numatune = numatune
        d.cells = cells.isEmpty ? "" : "<numa>\(cells)</numa>"
        d.devices = devices
        d.vcpus = vcpus
        d.acpi = true
        return d.xml
    }

    /// The memory-backend objects of a QEMU command line, each as its JSON dictionary.
    static func backendObjects(_ argv: String) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        var rest = Substring(argv)
        while let open = rest.range(of: "'{\"qom-type\":\"memory-backend-") {
            guard let close = rest[open.upperBound...].range(of: "}'") else { break }
            let json = rest[rest.index(after: open.lowerBound)..<rest.index(before: close.upperBound)]
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            out.append(obj)
            rest = rest[close.upperBound...]
        }
        return out
    }

    /// Each backend of the plan beside the object libvirt gives QEMU, field by field.
    static func expectPlanIsArgv(_ plan: DomainPlan, _ objects: [[String: Any]], shape: String) {
        #expect(plan.backends.map(\.backend.id) == objects.map { $0["id"] as? String }, "\(shape): backend ids")
        for (p, o) in zip(plan.backends, objects) {
            let b = p.backend
            let what = "\(shape) \(b.id ?? "?")"
            #expect(b.kind.rawValue == o["qom-type"] as? String, "\(what): type")
            #expect(b.path?.path == o["mem-path"] as? String, "\(what): mem-path")
            #expect(b.bytes == (o["size"] as? NSNumber)?.uint64Value, "\(what): size")
            #expect(b.share == (o["share"] as? Bool), "\(what): share")
            #expect(b.prealloc == (o["prealloc"] as? Bool ?? false), "\(what): prealloc")
            #expect(b.threadContext == o["prealloc-context"] as? String, "\(what): thread-context")
            let onLine = b.policy == "restrictive" ? [] : b.hostNodes
            #expect(onLine == ((o["host-nodes"] as? [NSNumber]) ?? []).map(\.intValue), "\(what): host-nodes")
            #expect((b.policy == "restrictive" ? nil : b.policy) == o["policy"] as? String, "\(what): policy")
            #expect((b.kind == .memfd && b.hugepageSize > 0) == (o["hugetlb"] as? Bool ?? false), "\(what): hugetlb")
            if b.kind == .memfd && b.hugepageSize > 0 {
                #expect(b.hugepageSize == (o["hugetlbsize"] as? NSNumber)?.uint64Value, "\(what): hugetlbsize")
            }
        }
    }

    /// The leases of a domain, their inodes, and whether QEMU maps exactly those.
    func expectHandedOver(_ pool: TestPool, _ lv: LibvirtHost, _ uuid: String, aliases: [String]) throws {
        let leased = try FileManager.default.contentsOfDirectory(atPath: "\(pool.mount)/.prezero/leased").sorted()
        #expect(leased.map { $0.components(separatedBy: "~")[0] } == aliases.map { "\(uuid).\($0)" }, "\(pool.log().suffix(3000))")
        let inodes = Set(leased.compactMap { Files.status(followingPath: "\(pool.mount)/.prezero/leased/\($0)")?.inode })
        #expect(lv.mappedInodes(try lv.qemuPID(uuid)) == inodes, "QEMU maps the leased pool files")
    }
}
