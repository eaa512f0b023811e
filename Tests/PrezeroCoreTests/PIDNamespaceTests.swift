import Testing
@testable import PrezeroCore

@Suite("PIDNamespace")
struct PIDNamespaceTests {
    @Test func theInitialNamespaceIsAccepted() {
        #expect(PIDNamespace.problem(own: "pid:[4026531836]", pid1: "pid:[4026531836]") == nil)
        #expect(PIDNamespace.problem(own: "pid:[4026531836]", pid1: nil) == nil, "PID 1's link unreadable: the fixed inode decides")
    }

    @Test func anotherNamespaceIsRefusedSayingWhy() throws {
        let p = try #require(PIDNamespace.problem(own: "pid:[4026532481]", pid1: "pid:[4026532481]"),
                             "a container's own /proc: PID 1 is its init, in the same namespace")
        #expect(p.contains("not in the host's initial PID namespace") && p.contains("pid:[4026532481]") && p.contains("run prezerod on the host"), "\(p)")
        #expect(PIDNamespace.problem(own: "pid:[4026532481]", pid1: nil) != nil)
        let q = try #require(PIDNamespace.problem(own: "pid:[4026531836]", pid1: "pid:[4026532481]"))
        #expect(q.contains("is not PID 1's"), "\(q)")
    }
}
