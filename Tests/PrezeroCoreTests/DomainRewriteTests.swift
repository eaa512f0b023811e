import Testing
@testable import PrezeroCore
@testable import PrezeroLibvirtModel

/// A defined domain as `virsh dumpxml --inactive` prints it, with its <memoryBacking> varied.
private func defined(_ backing: String?, cells: String = "") -> String {
    """
    <domain type='kvm'>
      <name>guest</name>
      <uuid>11111111-2222-4333-8444-555555555555</uuid>
      <memory unit='KiB'>2097152</memory>
      <currentMemory unit='KiB'>2097152</currentMemory>
    \(backing.map { $0 + "\n" } ?? "")  <vcpu placement='static'>2</vcpu>
      <os>
        <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
      </os>
    \(cells.isEmpty ? "" : "  <cpu>\n    <numa>\n\(cells)\n    </numa>\n  </cpu>\n")  <devices>
        <emulator>/usr/bin/qemu-system-x86_64</emulator>
      </devices>
    </domain>
    """
}

/// A recorded definition as libvirt would print it back: with a UUID.
private func recorded(_ name: String) throws -> String {
    try LibvirtFixtures.defined(name).replacingAll("</name>", with: "</name>\n  <uuid>11111111-2222-4333-8444-555555555555</uuid>")
}

private func eligible(_ xml: String) throws -> Bool {
    let plan = try HookPlanner.plan(DomainXML.parse(xml), host: standardHost)
    return plan.backends.allSatisfy { $0.decision == .handOver }
}

/// The lines of `b` that are not in `a`, and those of `a` not in `b`.
private func lineChanges(_ a: String, _ b: String) -> (added: [String], removed: [String]) {
    let x = a.split(separator: "\n").map(String.init), y = b.split(separator: "\n").map(String.init)
    return (y.filter { !x.contains($0) }, x.filter { !y.contains($0) })
}

@Suite("DomainRewrite.enable")
struct DomainRewriteTests {
    @Test func stockHugepagesBecomeEligibleAndNothingElseChanges() throws {
        let xml = defined("""
              <memoryBacking>
                <hugepages>
                  <page size='2048' unit='KiB'/>
                </hugepages>
                <locked/>
                <allocation mode='immediate'/>
              </memoryBacking>
            """)
        #expect(try !eligible(xml))
        let r = try DomainRewrite.enable(xml)
        #expect(try eligible(r.xml))
        let (added, removed) = lineChanges(xml, r.xml)
        #expect(added == ["    <source type='file'/>", "    <access mode='shared'/>"])
        #expect(removed == ["    <hugepages>", "      <page size='2048' unit='KiB'/>", "    </hugepages>"])
        // libvirt's order: locked, source, access, allocation.
        #expect(r.xml.contains("<locked/>\n    <source type='file'/>\n    <access mode='shared'/>\n    <allocation mode='immediate'/>"))
        #expect(r.changes.count == 3)
        #expect(r.changes[0].hasPrefix("removed <hugepages><page size='2048' unit='KiB'/></hugepages>"))
    }

    @Test func noMemoryBackingGetsOneAfterCurrentMemory() throws {
        let xml = defined(nil)
        let r = try DomainRewrite.enable(xml)
        #expect(try eligible(r.xml))
        #expect(r.xml.contains("</currentMemory>\n  <memoryBacking>\n    <source type='file'/>\n    <access mode='shared'/>\n  </memoryBacking>\n  <vcpu"))
        #expect(lineChanges(xml, r.xml).removed.isEmpty)
    }

    @Test func memfdAndPrivateAreReplacedInPlace() throws {
        let xml = defined("  <memoryBacking>\n    <source type='memfd'/>\n    <access mode='private'/>\n    <discard/>\n  </memoryBacking>")
        let r = try DomainRewrite.enable(xml)
        #expect(try eligible(r.xml))
        #expect(r.changes == ["<source type='memfd'/> → <source type='file'/>", "<access mode='private'/> → <access mode='shared'/>"])
        #expect(r.xml.contains("<access mode='shared'/>\n    <discard/>"))
    }

    @Test func privateCellsAreSwitchedToShared() throws {
        let cells = """
                  <cell id='0' cpus='0' memory='1048576' unit='KiB' memAccess='private'/>
                  <cell id='1' cpus='1' memory='1048576' unit='KiB'/>
            """
        let xml = defined("  <memoryBacking>\n    <hugepages/>\n  </memoryBacking>", cells: cells)
        let r = try DomainRewrite.enable(xml)
        #expect(try eligible(r.xml))
        #expect(r.changes.last == "<cell id='0'> memAccess private → shared")
        #expect(r.xml.contains("<cell id='0' cpus='0' memory='1048576' unit='KiB' memAccess='shared'/>"))
        #expect(r.xml.contains("<cell id='1' cpus='1' memory='1048576' unit='KiB'/>"))
    }

    @Test func anEligibleDomainIsLeftByteForByte() throws {
        for name in ["h1", "h2", "e8file"] {
            let xml = try recorded(name)
            let r = try DomainRewrite.enable(xml)
            #expect(r.changes.isEmpty, "\(name)")
            #expect(r.xml == xml)
        }
    }

    @Test func everyRecordedDomainComesOutEligible() throws {
        for name in LibvirtFixtures.names {
            let r = try DomainRewrite.enable(try recorded(name))
            #expect(try eligible(r.xml), "\(name)")
        }
    }

    @Test func badXMLIsRefused() {
        for bad in ["", "<domain>", defined(nil).replacingAll("</domain>", with: ""), "<!DOCTYPE x><domain/>"] {
            #expect(throws: DomainRewrite.RewriteError.self) { try DomainRewrite.enable(bad) }
        }
    }
}

@Suite("LineDiff")
struct LineDiffTests {
    @Test func identicalTextsHaveNoDiff() {
        #expect(LineDiff.unified("a\nb\n", "a\nb\n") == "")
    }

    @Test func hunksCarryContextAndLineNumbers() {
        let a = (1...20).map { "l\($0)" }.joined(separator: "\n")
        var lines = (1...20).map { "l\($0)" }
        lines[9] = "changed"
        lines.insert("new", at: 15)
        let d = LineDiff.unified(a, lines.joined(separator: "\n"), from: "old", to: "new", context: 1)
        #expect(d == """
            --- old
            +++ new
            @@ -9,3 +9,3 @@
             l9
            -l10
            +changed
             l11
            @@ -15,2 +15,3 @@
             l15
            +new
             l16

            """)
    }
}

@Suite("ProcParsers.processStart")
struct ProcessStartTests {
    @Test func fieldTwentyTwoAfterBootTime() {
        // A command name with spaces and a parenthesis, as /proc allows.
        let stat = "4242 (lib virt) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 17 0 12345 1000 200"
        let t = ProcParsers.processStart(stat: stat, procStat: "cpu 1 2 3\nbtime 1700000000\nprocesses 9\n", ticksPerSecond: 100)
        #expect(t == 1_700_000_000 + 123.45)
        #expect(ProcParsers.processStart(stat: "garbage", procStat: "btime 1", ticksPerSecond: 100) == nil)
        #expect(ProcParsers.processStart(stat: stat, procStat: "no boot time", ticksPerSecond: 100) == nil)
    }
}
