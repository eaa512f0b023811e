import PrezeroProtocol
import Testing

@Suite("HookSettings and HookCall: what prezero-hook sends and how it reads the answer")
struct HookCallTests {
    @Test func settingsParse() {
        let s = HookSettings(parsing: """
            # comment
            socket = /run/x.sock
            timeout_ms=250\r
            fail_closed = yes
            unknown = 1
            """)
        #expect(s.socket == "/run/x.sock")
        #expect(s.timeoutMs == 250)
        #expect(s.failClosed)
        #expect(s.problems == ["line 5: unknown key 'unknown' (known keys: socket, timeout_ms, fail_closed); it is ignored and the defaults apply"])
    }

    @Test func everyMistakeInHookConfIsReportedInOneLineAndKeepsTheDefault() {
        let s = HookSettings(parsing: "sokcet = /run/typo.sock\ntimeout_ms = soon\nfail_closed = on\ntimeout_ms = 0\nsocket =\nlonely\nbad\u{1}key\u{85} = 1\n# fine = 1\n")
        #expect(s.socket == ControlProtocol.defaultSocket)
        #expect(s.timeoutMs == 1)
        #expect(!s.failClosed)
        #expect(s.problems.count == 7, "\(s.problems)")
        #expect(s.problems.first == "line 1: unknown key 'sokcet' (known keys: socket, timeout_ms, fail_closed); it is ignored and the defaults apply")
        #expect(s.problems.contains("line 3: fail_closed = 'on' is not true or false; the default false applies"))
        #expect(s.problems.contains("line 7: unknown key 'bad?key?' (known keys: socket, timeout_ms, fail_closed); it is ignored and the defaults apply"))
        for p in s.problems { #expect(!p.contains(where: \.isNewline) && p.contains("line "), "\(p)") }
        #expect(HookSettings(parsing: "socket = /s\ntimeout_ms = 250\nfail_closed = false\n\n# comment\n").problems.isEmpty)
    }

    @Test(arguments: ["", "socket", "socket =", "timeout_ms = soon", "timeout_ms = -5", "\u{0}\u{ff}", "= = ="])
    func brokenSettingsKeepTheDefaults(text: String) {
        let s = HookSettings(parsing: text)
        #expect(s.socket == ControlProtocol.defaultSocket)
        #expect(s.timeoutMs >= 1 && s.timeoutMs <= 5000)
        #expect(!s.failClosed)
    }

    @Test func onlyTheThreeCallsAreForwarded() throws {
        #expect(HookCall.request(args: ["vm", "prepare", "begin", "-"], stdin: []) == nil)
        #expect(HookCall.request(args: ["vm", "start"], stdin: []) == nil)
        #expect(HookCall.request(args: ["vm", "migrate", "begin", "-"], stdin: Array("<domain/>".utf8)) == nil)
        let r = try #require(HookCall.request(args: ["vm", "start", "begin", "-"], stdin: Array("<domain/>".utf8)))
        #expect(r == .hook(HookRequest(args: ["vm", "start", "begin", "-"], stdin: "<domain/>")))
        // What goes on the wire is what the daemon decodes, quotes and control bytes included.
        let odd = "<domain name='a\"b\\c'>\n\t\u{1}é</domain>"
        let req = try #require(HookCall.request(args: ["a\"b", "stopped", "end", "-"], stdin: Array(odd.utf8)))
        #expect(try Wire.decodeRequest(Wire.encode(req)).get() == req)
    }

    @Test func answersAreReadAsResponses() {
        #expect(HookCall.refusal(Wire.encode(Response.hook(HookResult(decisions: ["ram-node0: handed over"])))) == nil)
        #expect(HookCall.refusal(Wire.encode(Response.error(ControlError(.noPool, "no pool for 1 GiB pages")))) ==
            "no pool for 1 GiB pages (no_pool)")
        #expect(HookCall.refusal([]) == "no answer")
        #expect(HookCall.refusal(Array("{\"ok\":true}".utf8))?.hasPrefix("an unreadable answer") == true)
        // A success of the wrong kind, or a bare `"ok":true`, is not a hand-over; the old
        // substring test took both for one.
        #expect(HookCall.refusal(Wire.encode(Response.release(ReleaseResult(lease: "k", reclaimed: true)))) ==
            "an answer of kind release to a hook call")
        #expect(HookCall.refusal(Array(#"{"v":1,"ok":false,"error":{"code":"x","message":"\"ok\":true"}}"#.utf8)) ==
            "\"ok\":true (x)")
    }

    /// Under fail_closed the hook refuses a start whenever `refusal` says why: a hand-over
    /// that failed for one backend is enough, even with the others handed over.
    @Test func aFailedHandOverForAnyBackendIsARefusal() throws {
        let ok = ClaimResult(outcome: .hit, path: "/d/ram-node0", node: 0, bytes: 4 << 20, pageSize: 2 << 20, lease: "u.ram-node0")
        let partial = HookResult(decisions: ["ram-node0: handed over", "ram-node1: not handed over: claim: no"], handovers: [ok],
                                 failed: ["ram-node1: claim: cannot create /d/ram-node1: something already exists there"])
        #expect(HookCall.refusal(Wire.encode(Response.hook(partial))) ==
            "not handed over: ram-node1: claim: cannot create /d/ram-node1: something already exists there")
        let two = HookResult(failed: ["pc.ram: x", "ram-node1: y"])
        #expect(HookCall.refusal(Wire.encode(Response.hook(two))) == "not handed over: pc.ram: x; ram-node1: y")
        // A miss is no failure: QEMU allocates after room was made.
        let miss = ClaimResult(outcome: .miss, path: "", node: nil, bytes: 4 << 20, pageSize: 2 << 20, lease: nil)
        #expect(HookCall.refusal(Wire.encode(Response.hook(HookResult(handovers: [ok, miss])))) == nil)
        // An answer from a prezerod that reported no failures reads as none.
        let old = Array(#"{"v":1,"ok":true,"hook":{"decisions":["a"],"handovers":[],"released":[]}}"#.utf8)
        #expect(try Wire.decode(Response.self, old) == .hook(HookResult(decisions: ["a"])))
        #expect(HookCall.refusal(old) == nil)
    }
}
