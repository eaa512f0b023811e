/// One answer: the result of the request's operation (fill and drain answer with the
/// status), or the error that refused it.
public enum Response: Sendable, Equatable {
    case status(StatusResult)
    case claim(ClaimResult)
    case release(ReleaseResult)
    case makeRoom(MakeRoomResult)
    case hook(HookResult)
    case error(ControlError)

    /// What it is, for a message about an answer that does not fit its question.
    public var kind: String {
        switch self {
        case .status: "status"
        case .claim: "claim"
        case .release: "release"
        case .makeRoom: "make-room"
        case .hook: "hook"
        case .error(let e): "error \(e.code.rawValue)"
        }
    }
}

/// On the wire: `{"v":1,"ok":true,"claim":{…}}` or `{"v":1,"ok":false,"error":{…}}`.
extension Response: Codable {
    enum CodingKeys: String, CodingKey {
        case v, ok, error, status, claim, release, hook
        case makeRoom = "make_room"
    }

    /// Reads `ok` first: a refusal carries only its error; else the one result key present.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if !(try c.decode(Bool.self, forKey: .ok)) {
            self = .error(try c.decode(ControlError.self, forKey: .error))
        } else if let r = try c.decodeIfPresent(StatusResult.self, forKey: .status) {
            self = .status(r)
        } else if let r = try c.decodeIfPresent(ClaimResult.self, forKey: .claim) {
            self = .claim(r)
        } else if let r = try c.decodeIfPresent(ReleaseResult.self, forKey: .release) {
            self = .release(r)
        } else if let r = try c.decodeIfPresent(MakeRoomResult.self, forKey: .makeRoom) {
            self = .makeRoom(r)
        } else {
            self = .hook(try c.decode(HookResult.self, forKey: .hook))
        }
    }

    /// Writes `v` and `ok`, then the error, or the result under its operation's key.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ControlProtocol.version, forKey: .v)
        if case .error(let e) = self {
            try c.encode(false, forKey: .ok)
            try c.encode(e, forKey: .error)
            return
        }
        try c.encode(true, forKey: .ok)
        switch self {
        case .status(let r): try c.encode(r, forKey: .status)
        case .claim(let r): try c.encode(r, forKey: .claim)
        case .release(let r): try c.encode(r, forKey: .release)
        case .makeRoom(let r): try c.encode(r, forKey: .makeRoom)
        case .hook(let r): try c.encode(r, forKey: .hook)
        case .error: break
        }
    }
}
