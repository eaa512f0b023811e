/// Encoding and decoding of one line of the protocol.
public enum Wire {
    /// One line: compact JSON with sorted keys and a newline.
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        // Only a non-finite rate could fail to encode; answer with an error rather than a broken line.
        let json = (try? JSONCoding.encode(value))
            ?? (try? JSONCoding.encode(Response.error(ControlError(.system, "prezerod could not encode its answer"))))
            ?? .null
        var bytes = Array(json.text.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// Indented JSON with sorted keys, for people and for `--json` output.
    public static func pretty<T: Encodable>(_ value: T) throws -> String {
        try JSONCoding.encode(value).prettyText
    }

    /// Decodes a request line, turning every failure into a ControlError that says what was wrong.
    public static func decodeRequest(_ line: [UInt8]) -> Result<Request, ControlError> {
        guard let json = try? JSON(parsing: line), case .object(let members) = json else {
            return .failure(ControlError(.badRequest, "request is not a JSON object; send one JSON object per line"))
        }
        guard let v = members["v"], v != .null else {
            return .failure(ControlError(.badRequest, "request has no protocol version \"v\"; send \"v\":\(ControlProtocol.version)"))
        }
        guard case .number(let n) = v else {
            return .failure(ControlError(.badRequest, "protocol version \"v\" is \(v.kind), not a number; send \"v\":\(ControlProtocol.version)"))
        }
        guard Int(n) == ControlProtocol.version else {
            return .failure(ControlError(.version, "protocol version \(n) is not supported; this daemon speaks \(ControlProtocol.version)"))
        }
        let request: Request
        do {
            request = try JSONCoding.decode(Request.self, from: json)
        } catch {
            return .failure(ControlError(.badRequest, "malformed request: \(describe(error))"))
        }
        if let e = request.pathError { return .failure(e) }
        return .success(request)
    }

    /// Decodes one line as `type`: an answer, or a QMP reply; `describe` puts a failure in one line.
    public static func decode<T: Decodable>(_ type: T.Type, _ line: [UInt8]) throws -> T {
        try JSONCoding.decode(type, from: try JSON(parsing: line))
    }

    /// One line for a decoding error, naming the field.
    public static func describe(_ error: any Error) -> String { JSONCoding.describe(error) }
}
