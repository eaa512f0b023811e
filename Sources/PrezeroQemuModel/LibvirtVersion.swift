/// The version of the libvirt a plan is made for. Where libvirt's rules for a domain's memory
/// backends changed between releases, the plan follows the version it is given; prezerod reads it
/// from `<selfvers>` in libvirt's QEMU capabilities cache (the hook never calls libvirt), the CLI
/// from libvirtd or `--libvirt-version`.
public struct LibvirtVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int

    /// Version `major.minor.micro`.
    public init(_ major: Int, _ minor: Int, _ micro: Int = 0) {
        self.major = major
        self.minor = minor
        self.micro = micro
    }

    /// The oldest libvirt prezero plans for (Debian 12's): the rules used when none is known.
    public static let oldest = LibvirtVersion(9, 0, 0)
    /// libvirt 12.0 binds a memory device's `<source><nodemask>` strictly, whatever `<numatune>` says.
    public static let strictDeviceNodemask = LibvirtVersion(12, 0, 0)

    /// libvirt's number form, `major * 1,000,000 + minor * 1,000 + micro` (what
    /// virConnectGetLibVersion returns and `<selfvers>` holds): 11003000 is 11.3.0.
    public init?(number: UInt64) {
        guard number >= 1_000_000, number < 1_000_000_000 else { return nil }
        self.init(Int(number / 1_000_000), Int(number / 1000 % 1000), Int(number % 1000))
    }

    /// `11.3.0` or `11.3`.
    public init?(text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard (2...3).contains(parts.count), parts.allSatisfy({ $0 != nil && $0! >= 0 && $0! < 1000 }) else { return nil }
        self.init(parts[0]!, parts[1]!, parts.count == 3 ? parts[2]! : 0)
    }

    public var number: UInt64 { UInt64(major) * 1_000_000 + UInt64(minor) * 1000 + UInt64(micro) }
    public var description: String { "\(major).\(minor).\(micro)" }

    public static func < (a: LibvirtVersion, b: LibvirtVersion) -> Bool { a.number < b.number }

    /// The libvirt version a QEMU capabilities cache file was written by: its `<selfvers>`
    /// (virQEMUCapsFormatCache). nil when the file has none.
    public static func cached(capsXML: String) -> LibvirtVersion? {
        let bytes = Array(capsXML.utf8)
        let open = Array("<selfvers>".utf8)
        guard bytes.count > open.count, let at = (0...(bytes.count - open.count)).first(where: { bytes[$0..<($0 + open.count)].elementsEqual(open) })
        else { return nil }
        let digits = bytes[(at + open.count)...].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard !digits.isEmpty, digits.count <= 12, bytes.dropFirst(at + open.count + digits.count).starts(with: "</selfvers>".utf8),
              let n = UInt64(String(decoding: digits, as: UTF8.self)) else { return nil }
        return LibvirtVersion(number: n)
    }
}
