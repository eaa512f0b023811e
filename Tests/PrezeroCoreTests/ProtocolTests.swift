import Foundation
import PrezeroProtocol
import Testing
@testable import PrezeroCore

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

/// The error a line decodes to, or nil when it is a valid request.
private func requestError(_ line: String) -> ControlError? {
    if case .failure(let e) = Wire.decodeRequest(bytes(line)) { return e }
    return nil
}

@Suite("Wire.decodeRequest")
struct WireDecodeRequestTests {
    @Test(arguments: ["", "garbage", "{", "[1,2]", "\"v\"", "42", "null", "{\"v\":1", "\u{00}\u{ff}"])
    func garbageIsABadRequest(line: String) throws {
        let e = try #require(requestError(line))
        #expect(e.code == .badRequest)
        #expect(e.message.contains("JSON object"), "\(e)")
    }

    @Test(arguments: [#"{}"#, #"{"op":"status"}"#, #"{"v":null,"op":"status"}"#])
    func missingVersionIsABadRequest(line: String) throws {
        let e = try #require(requestError(line))
        #expect(e.code == .badRequest)
        #expect(e.message.contains("\"v\""), "\(e)")
    }

    @Test(arguments: [0, 2, 99, -1])
    func otherVersionsAreUnsupported(v: Int) throws {
        let e = try #require(requestError(#"{"v":\#(v),"op":"status"}"#))
        #expect(e.code == .version)
        #expect(e.code.rawValue == "unsupported_version")
        #expect(e.message.contains("\(v)"), "\(e)")
    }

    @Test func versionCheckComesBeforeTheBody() throws {
        // A future version may change the body: answer with the version error, not a field error.
        let e = try #require(requestError(#"{"v":2,"op":"teleport","claim":"whatever"}"#))
        #expect(e.code == .version)
    }

    @Test func statusRequest() throws {
        let r = try Wire.decodeRequest(bytes(#"{"v":1,"op":"status"}"#)).get()
        #expect(r == .status)
    }

    @Test func claimRequestWithSnakeCaseKeys() throws {
        let line = #"""
            {"v":1,"op":"claim","claim":{"bytes":4294967296,"page_size":2097152,"nodes":[0,1],
             "dest":"/dev/hugepages/libvirt/qemu/1-vm/ram-node0","uid":64055,"gid":64055,"mode":384,
             "lease":"3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0"}}
            """#
        let r = try Wire.decodeRequest(bytes(line)).get()
        #expect(r == .claim(ClaimRequest(
            bytes: 4 << 30, pageSize: 2 << 20, nodes: [0, 1], dest: "/dev/hugepages/libvirt/qemu/1-vm/ram-node0",
            uid: 64055, gid: 64055, mode: 0o600, lease: "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0")))
    }

    @Test func claimRequestOptionalFieldsMayBeLeftOut() throws {
        let line = #"{"v":1,"op":"claim","claim":{"bytes":2097152,"nodes":[],"dest":"/h/x","uid":0,"gid":0,"mode":384}}"#
        guard case .claim(let c) = try Wire.decodeRequest(bytes(line)).get() else { Issue.record("not a claim"); return }
        #expect(c.pageSize == nil)
        #expect(c.lease == nil)
    }

    @Test func camelCaseKeysAreNotTheWireNames() throws {
        // "pageSize" is not a key of the protocol: it is ignored, not read as page_size.
        let line = #"{"v":1,"op":"claim","claim":{"bytes":2097152,"pageSize":1073741824,"nodes":[],"dest":"/h/x","uid":0,"gid":0,"mode":384}}"#
        guard case .claim(let c) = try Wire.decodeRequest(bytes(line)).get() else { Issue.record("not a claim"); return }
        #expect(c.pageSize == nil)
    }

    @Test func makeRoomRequestWithSnakeCaseKeys() throws {
        let line = #"{"v":1,"op":"make-room","make_room":{"page_size":1073741824,"pages":{"0":4,"1":2}}}"#
        let r = try Wire.decodeRequest(bytes(line)).get()
        #expect(r == .makeRoom(MakeRoomRequest(pageSize: 1 << 30, pages: ["0": 4, "1": 2])))
    }

    @Test func releaseAndScopeRequests() throws {
        let rel = try Wire.decodeRequest(bytes(#"{"v":1,"op":"release","release":{"lease":"k1"}}"#)).get()
        #expect(rel == .release(ReleaseRequest(lease: "k1")))
        let fill = try Wire.decodeRequest(bytes(#"{"v":1,"op":"fill","scope":{"mount":"/dev/hugepages","node":1,"target":"50%"}}"#)).get()
        #expect(fill == .fill(PoolScope(mount: "/dev/hugepages", node: 1, target: .percent(50))))
        let drain = try Wire.decodeRequest(bytes(#"{"v":1,"op":"drain","scope":{}}"#)).get()
        #expect(drain == .drain(PoolScope()))
        // fill and drain may leave the scope out.
        #expect(try Wire.decodeRequest(bytes(#"{"v":1,"op":"drain"}"#)).get() == .drain(PoolScope()))
        let noPayload = try #require(requestError(#"{"v":1,"op":"claim"}"#))
        #expect(noPayload.message.contains("missing \"claim\" object"), "\(noPayload)")
    }

    @Test func aMalformedBodyIsABadRequestNamingTheField() throws {
        let missing = try #require(requestError(#"{"v":1,"op":"claim","claim":{"nodes":[],"dest":"/x","uid":0,"gid":0,"mode":384}}"#))
        #expect(missing.code == .badRequest)
        #expect(missing.message.contains("claim"), "\(missing)")
        #expect(missing.message.contains("missing field \"bytes\""), "\(missing)")

        let wrongType = try #require(requestError(#"{"v":1,"op":"claim","claim":{"bytes":"lots","nodes":[],"dest":"/x","uid":0,"gid":0,"mode":384}}"#))
        #expect(wrongType.code == .badRequest)
        #expect(wrongType.message.contains("claim.bytes"), "\(wrongType)")

        let badOp = try #require(requestError(#"{"v":1,"op":"teleport"}"#))
        #expect(badOp.code == .badRequest)
        #expect(badOp.message.contains("op"), "\(badOp)")

        let noOp = try #require(requestError(#"{"v":1}"#))
        #expect(noOp.code == .badRequest)
        #expect(noOp.message.contains("missing field \"op\""), "\(noOp)")

        let badTarget = try #require(requestError(#"{"v":1,"op":"fill","scope":{"target":"lots"}}"#))
        #expect(badTarget.code == .badRequest)
        #expect(badTarget.message.contains("scope.target"), "\(badTarget)")
    }

    @Test(arguments: [
        Request.status,
        Request.claim(ClaimRequest(bytes: 2 << 20, pageSize: 2 << 20, nodes: [1], dest: "/h/a b", lease: "k")),
        Request.release(ReleaseRequest(dest: "/h/x")),
        Request.fill(PoolScope(mount: "/h", node: 0, target: .bytes(1 << 30))),
        Request.drain(PoolScope(node: 3)),
        Request.makeRoom(MakeRoomRequest(pageSize: 1 << 30, pages: ["0": 1])),
    ])
    func encodedRequestsDecodeBack(request: Request) throws {
        let line = Wire.encode(request)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().contains(UInt8(ascii: "\n")) == false)
        let back = try Wire.decodeRequest(line).get()
        #expect(back == request)
        #expect(text(line).contains("\"v\":\(ControlProtocol.version)"))
    }

    @Test func encodedRequestsUseSnakeCaseKeys() {
        let claim = text(Wire.encode(Request.claim(ClaimRequest(bytes: 1, pageSize: 2, dest: "/d"))))
        #expect(claim.contains("\"page_size\":2"))
        #expect(!claim.contains("pageSize"))
        #expect(claim.contains("\"v\":1"))
        let room = text(Wire.encode(Request.makeRoom(MakeRoomRequest(pageSize: 2, pages: ["0": 1]))))
        #expect(room.contains("\"make_room\":{"))
        #expect(room.contains("\"op\":\"make-room\""))
        #expect(!room.contains("makeRoom"))
    }
}

@Suite("Responses")
struct ResponseTests {
    @Test func anErrorResponseSaysOkFalse() throws {
        let line = text(Wire.encode(Response.error(ControlError(.badRequest, "request is not a JSON object"))))
        #expect(line.contains("\"ok\":false"))
        #expect(line.contains("\"code\":\"bad_request\""))
        #expect(line.contains("\"message\":\"request is not a JSON object\""))
        #expect(line.contains("\"v\":1"))
        #expect(line.hasSuffix("}\n"))
        #expect(!line.contains("\"claim\""))
    }

    @Test func anErrorResponseDecodesBack() throws {
        let r = try Wire.decode(Response.self, Wire.encode(Response.error(ControlError(.busy, "later"))))
        #expect(r == .error(ControlError(.busy, "later")))
    }

    @Test func aSuccessResponseSaysOkTrue() throws {
        let claim = ClaimResult(outcome: .truncated, path: "/h/vm", node: 1, bytes: 4 << 30, pageSize: 2 << 20, lease: "k")
        let line = Wire.encode(Response.claim(claim))
        let s = text(line)
        #expect(s.contains("\"ok\":true"))
        #expect(!s.contains("\"error\""))
        #expect(s.contains("\"outcome\":\"truncated\""))
        #expect(s.contains("\"page_size\":2097152"))
        let back = try Wire.decode(Response.self, line)
        #expect(back == .claim(claim))
    }

    @Test func otherResultsRoundTrip() throws {
        var node = NodeStatus(node: 1)
        node.cpus = [0, 1, 2]
        node.totalBytes = 64 << 30
        node.fillRate = 1.5e9
        node.heldBytes = 8 << 20
        let status = StatusResult(pid: 42, mounts: [
            MountStatus(path: "/dev/hugepages", pageSize: 2 << 20, poolDir: "/dev/hugepages/.prezero", quarantined: 0, nodes: [node],
                        leases: [LeaseStatus(lease: "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0", node: 1, bytes: 4 << 30)],
                        held: [HeldStatus(lease: "k", node: 1, bytes: 8 << 20)],
                        outsideNames: [OutsideNameStatus(lease: "j", names: ["/dev/hugepages/t/keep"], extraLinks: 1)]),
        ])
        let release = ReleaseResult(lease: "k", reclaimed: true)
        let room = MakeRoomResult(freed: ["0": 2], free: ["0": 10])
        let lines = [Response.status(status), .release(release), .makeRoom(room)].map(Wire.encode)
        let s = lines.map(text).joined()
        for key in ["held_outside", "held_outside_bytes", "outside_names", "extra_links", "recycled_bytes", "pool_dir", "total_bytes", "fill_rate_bps", "make_room", "clean_files", "leases", "vm"] {
            #expect(s.contains("\"\(key)\""), "\(key)")
        }
        #expect(try lines.map { try Wire.decode(Response.self, $0) } == [.status(status), .release(release), .makeRoom(room)])
    }

    /// Accounting by VM sums leases by `vm`: the domain's UUID for the hook's keys, the
    /// launcher for `prezero launch`'s.
    @Test(arguments: [
        ("3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.ram-node0", "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b"),
        ("3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b.pc.ram", "3f2c9a6e-1b4d-4e8f-9a0b-5c6d7e8f9a0b"),
        ("launch.4242.m0", "launch.4242"),
        ("mine", "mine"),
        ("my.own.key", "my.own.key"),
        ("3f2c9a6e.pc.ram", "3f2c9a6e.pc.ram"),
    ])
    func aLeaseNamesItsVM(lease: String, vm: String) {
        #expect(LeaseStatus(lease: lease, node: 0, bytes: 0).vm == vm)
    }

    @Test func aNewNodeStatusCountsEveryOutcome() {
        let n = NodeStatus(node: 0)
        #expect(n.outcomes == [.hit: 0, .truncated: 0, .partial: 0, .miss: 0])
        // On the wire an object keyed by the outcome names, as before.
        #expect(String(decoding: Wire.encode(n), as: UTF8.self).contains("\"outcomes\":{\"hit\":0,\"miss\":0,\"partial\":0,\"truncated\":0}"))
    }

    @Test func errorCodesAreStable() {
        let codes: [ControlError.Code] = [.badRequest, .tooLarge, .version, .forbidden, .badDestination, .notFound, .noPool, .busy, .system]
        #expect(codes.map(\.rawValue) == [
            "bad_request", "too_large", "unsupported_version", "forbidden", "bad_destination", "not_found", "no_pool", "busy", "system",
        ])
    }

    @Test func operationWireNames() {
        #expect(Operation.allCases.map(\.rawValue) == ["status", "claim", "release", "fill", "drain", "hook", "make-room"])
    }

    @Test func describeNamesTheField() {
        struct Outer: Decodable { var inner: Inner }
        struct Inner: Decodable { var n: Int }
        do {
            _ = try JSONDecoder().decode(Outer.self, from: Data(#"{"inner":{}}"#.utf8))
            Issue.record("decoded")
        } catch {
            #expect(Wire.describe(error) == "inner: missing field \"n\"")
        }
        struct Plain: Error, CustomStringConvertible { var description: String { "plain" } }
        #expect(Wire.describe(Plain()) == "plain")
    }
}

@Suite("Paths from outside: no NUL, no control character")
struct PathCharacterTests {
    /// Each path-carrying request, with `path` in its path.
    static func requests(_ path: String) -> [(Request, ControlError.Code)] {
        [(.claim(ClaimRequest(bytes: 2 << 20, dest: path)), .badDestination),
         (.release(ReleaseRequest(dest: path)), .badDestination),
         (.fill(PoolScope(mount: path)), .badRequest),
         (.drain(PoolScope(mount: path)), .badRequest)]
    }

    /// A NUL would cut the path short at openat: `/h/vms/a\0/../../etc` passes a `..` check
    /// on the Swift string and reaches the kernel as `/h/vms/a`.
    @Test(arguments: ["/h/vms/a\u{0}/../../etc/x", "/h/vms/x\u{0}", "/h/vms/x\u{1}", "/h/vms/x\n", "/h/vms/a\tb", "/h/vms/\u{1f}", "/h/vms/\u{7f}"])
    func refusedBeforeAnythingHappens(path: String) {
        for (request, code) in Self.requests(path) {
            switch Wire.decodeRequest(Wire.encode(request)) {
            case .success:
                Issue.record("\(request.operation.rawValue) with \(path.debugDescription) was accepted")
            case .failure(let e):
                #expect(e.code == code, "\(e.message)")
                #expect(e.message.contains("control character") && !e.message.contains(where: \.isNewline) && !e.message.contains("\u{0}"), "\(e.message.debugDescription)")
            }
        }
        // Sent raw rather than escaped, it is refused all the same.
        let raw = #"{"v":1,"op":"claim","claim":{"bytes":2097152,"nodes":[],"dest":"\#(path)","uid":0,"gid":0,"mode":384}}"#
        #expect(requestError(raw) != nil)
    }

    @Test func theRefusalNamesTheCharacterAndTheFixInOneLine() {
        #expect(PathRule.problem("/h/vms/x\u{0}y", what: "claim: destination") ==
            "claim: destination '/h/vms/x?y' holds the control character U+0000 at character 9; use a path without NUL or control characters")
        #expect(PathRule.problem("/h/\u{7f}", what: "fill: mount")?.contains("U+007F at character 4") == true)
        #expect(PathRule.problem("/h/vms/é x", what: "d") == nil)
    }

    @Test(arguments: ["/h/vms/a b", "/h/vms/é", "/h/vms/x\u{80}y", "/h/vms/日本"])
    func printablePathsPass(path: String) throws {
        for (request, _) in Self.requests(path) {
            #expect(try Wire.decodeRequest(Wire.encode(request)).get() == request)
        }
    }
}
