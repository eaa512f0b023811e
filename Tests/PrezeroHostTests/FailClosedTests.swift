import Foundation
import Glibc
import PrezeroProtocol
import PrezeroSys
import Testing

extension HostTests {
    /// `fail_closed`: a start whose hand-over failed for any backend is refused, even when
    /// the other backends got theirs.
    @Suite("fail_closed: a failed hand-over refuses the start", .tags(.hugePages))
    struct FailClosed: HostSuite {
        @Test("a domain of two cells whose second claim fails: prezerod reports it, and under fail_closed the hook refuses the start")
        func partialHandOverFailureRefusesUnderFailClosed() throws {
            let pool = try TestPool(config: "min_free: 0\nrefill_delay_ms: 0\nqemu_conf: {base}/qemu.conf",
                                    mountConfig: "target: 8M\nfile_size: 4M")
            defer { pool.close() }
            let backing = pool.mount + "/libvirt-ram"
            try "memory_backing_dir = \"\(backing)\"\n".write(toFile: pool.base + "/qemu.conf", atomically: true, encoding: .utf8)
            // h2 as libvirt 9.0 sends it, with two guest cells of 4 MiB: ram-node0 and ram-node1.
            let xml = try String(contentsOfFile: fixturesDir + "/libvirt-9.0-hook-stdin/h2.start-begin.xml", encoding: .utf8)
                .replacingOccurrences(of: "<memory unit='KiB'>2097152</memory>", with: "<memory unit='KiB'>8192</memory>")
                .replacingOccurrences(of: "<currentMemory unit='KiB'>2097152</currentMemory>", with: "<currentMemory unit='KiB'>8192</currentMemory>")
                .replacingOccurrences(of: "<vcpu placement='static'>1</vcpu>", with: "<vcpu placement='static'>2</vcpu>")
                .replacingOccurrences(of: "<cell id='0' cpus='0' memory='2097152' unit='KiB' memAccess='shared'/>",
                                      with: "<cell id='0' cpus='0' memory='4096' unit='KiB' memAccess='shared'/>\n      <cell id='1' cpus='1' memory='4096' unit='KiB' memAccess='shared'/>")
            #expect(xml.contains("<cell id='1'"))
            let domainDir = backing + "/libvirt/qemu/8-h2"
            try FileManager.default.createDirectory(atPath: domainDir, withIntermediateDirectories: true)
            // ram-node1's destination is taken, so its claim fails; ram-node0's does not.
            #expect(mkfifo(domainDir + "/ram-node1", 0o600) == 0)
            try pool.start()
            try pool.waitClean(8 * MiB)

            let args = ["h2", "start", "begin", "-"]
            let answer = try pool.client.send(.hook(HookRequest(args: args, stdin: xml)))
            guard case .hook(let r) = answer else { throw TestFailure("a hook call answered with \(answer.kind)") }
            print("start begin of two cells, the second destination taken: handed over \(r.handovers.map(\.path)), failed \(r.failed)")
            #expect(r.handovers.map(\.path) == [domainDir + "/ram-node0"])
            #expect(r.failed.count == 1 && r.failed[0].hasPrefix("ram-node1: ") && r.failed[0].contains("already exists"), "\(r.failed)")
            #expect(HookCall.refusal(Wire.encode(answer)) != nil)
            // Counted for the metrics (prezero_hook_failed_handovers_total), as is a refused request.
            #expect(try pool.client.status().failedHandovers == 1)
            _ = try? pool.client.send(.release(ReleaseRequest(lease: "no-such-lease")))
            #expect(try pool.client.status().refused["release"] == 1)

            // The hook as libvirtd runs it: refused under fail_closed, started otherwise, one line either way.
            let conf = pool.base + "/hook.conf"
            for failClosed in [true, false] {
                try "socket = \(pool.socket)\ntimeout_ms = 5000\nfail_closed = \(failClosed)\n".write(toFile: conf, atomically: true, encoding: .utf8)
                let h = try run([Binaries.dir + "/prezero-hook"] + args, stdin: xml, env: ["PREZERO_HOOK_CONF": conf], timeout: 10)
                print("prezero-hook start begin, fail_closed = \(failClosed): exit \(h.status): \(h.err)")
                #expect(h.status == (failClosed ? 1 : 0), "\(h.err)")
                #expect(h.out.isEmpty)
                #expect(h.err.split(separator: "\n").count == 1 && h.err.contains("ram-node1") && !h.err.contains("ram-node0"), "\(h.err)")
            }
            let end = try String(contentsOfFile: fixturesDir + "/libvirt-9.0-hook-stdin/h2.stopped-end.xml", encoding: .utf8)
            try pool.client.send(.hook(HookRequest(args: ["h2", "stopped", "end", "-"], stdin: end)))
            #expect(try pool.status().leases.isEmpty)
        }
    }
}
