import Foundation
import PrezeroCore
import PrezeroProtocol
import Yams

/// prezerod's config file: YAML through Yams into `Config`'s Codable conformance, which
/// checks every key (PrezeroCore); kept apart so that the pool links no Foundation.
extension Config {
    /// Reads YAML; unknown keys are errors so that a typo never silently falls back to a default.
    public static func parse(yaml: String) throws(ConfigError) -> Config {
        if yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return Config() }
        do {
            // Only comments: the defaults.
            guard try Yams.compose(yaml: yaml) != nil else { return Config() }
            return try YAMLDecoder().decode(Config.self, from: yaml)
        } catch let e as ConfigError {
            throw e
        } catch DecodingError.dataCorrupted(let c) where c.underlyingError is ConfigError {
            // Yams wraps errors thrown from our init(from:); keep their own words.
            throw c.underlyingError as! ConfigError
        } catch {
            throw ConfigError(message: describe(error))
        }
    }

    /// Yams quotes the offending YAML over several lines; a config error is one line
    /// that says where.
    static func describe(_ error: any Error) -> String {
        func at(_ context: YamlError.Context?, _ problem: String, _ mark: Mark) -> String {
            "line \(mark.line), column \(mark.column): " + (context.map { "\($0.text) (line \($0.mark.line)): " } ?? "") + problem
        }
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _)?, .parser(let context, let problem, let mark, _)?,
             .composer(let context, let problem, let mark, _)?:
            return at(context, problem, mark)
        case .duplicatedKeysInMapping(let keys, let context)?:
            return "line \(context.mark.line): the key\(keys.count == 1 ? "" : "s") \(keys.sorted().joined(separator: ", ")) appear\(keys.count == 1 ? "s" : "") twice"
        default:
            return Wire.describe(error).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        }
    }
}
