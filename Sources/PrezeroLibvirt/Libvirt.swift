import CLibvirt
import Glibc

/// A libvirt call that failed, with libvirt's own message.
public struct LibvirtError: Error, CustomStringConvertible {
    public var description: String
}

/// A connection to libvirtd through its C API: the one place prezero calls libvirt.
/// The CLI uses it; the hook never does (linking libvirt costs ~11 ms a process).
public final class LibvirtConnection {
    private let conn: OpaquePointer

    /// Opens `uri` (e.g. qemu:///system). libvirt's default error printer is silenced:
    /// every failure comes back as a LibvirtError carrying libvirt's message.
    public init(uri: String) throws(LibvirtError) {
        virSetErrorFunc(nil) { _, _ in }
        guard let c = virConnectOpen(uri) else {
            throw LibvirtError(description: "cannot connect to libvirt at \(uri): \(Self.lastError()); is libvirtd running?")
        }
        conn = c
    }

    deinit { virConnectClose(conn) }

    static func lastError() -> String {
        virGetLastErrorMessage().map { String(cString: $0) } ?? "unknown libvirt error"
    }

    /// libvirtd's own version, `major * 1,000,000 + minor * 1,000 + micro`.
    /// The corresponding C function is `virConnectGetLibVersion`.
    public func libVersion() throws(LibvirtError) -> UInt64 {
        var v: UInt = 0
        guard virConnectGetLibVersion(conn, &v) == 0 else {
            throw LibvirtError(description: "cannot read libvirtd's version: \(Self.lastError())")
        }
        return UInt64(v)
    }

    /// One domain, by name or UUID.
    public struct Domain: Sendable {
        public var name: String
        public var uuid: String
        public var active: Bool
    }

    /// Every domain libvirt knows, defined or running, sorted by name.
    public func domains() throws(LibvirtError) -> [Domain] {
        var list: UnsafeMutablePointer<virDomainPtr?>?
        let n = virConnectListAllDomains(conn, &list, 0)
        guard n >= 0, let list else { throw LibvirtError(description: "cannot list domains: \(Self.lastError())") }
        defer { free(list) }
        var out: [Domain] = []
        for i in 0..<Int(n) {
            guard let d = list[i] else { continue }
            defer { virDomainFree(d) }
            out.append(describe(d))
        }
        return out.sorted { $0.name < $1.name }
    }

    private func describe(_ d: virDomainPtr) -> Domain {
        var buf = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        _ = virDomainGetUUIDString(d, &buf)
        let name = virDomainGetName(d).map { String(cString: $0) } ?? ""
        let uuid = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return Domain(name: name, uuid: uuid, active: virDomainIsActive(d) == 1)
    }

    /// Runs `body` on the domain named (or with the UUID) `key`.
    private func with<T>(_ key: String, _ body: (virDomainPtr) throws(LibvirtError) -> T) throws(LibvirtError) -> T {
        guard let d = virDomainLookupByName(conn, key) ?? virDomainLookupByUUIDString(conn, key) else {
            throw LibvirtError(description: "no domain '\(key)': \(Self.lastError()); `virsh list --all` shows the defined ones")
        }
        defer { virDomainFree(d) }
        return try body(d)
    }

    /// The domain named (or with the UUID) `key`: its name, UUID and whether it runs.
    public func domain(_ key: String) throws(LibvirtError) -> Domain {
        try with(key) { describe($0) }
    }

    /// The domain's XML: the persistent definition when `inactive`, else the live one.
    /// Secure fields are included so that a rewrite loses nothing.
    public func xml(_ key: String, inactive: Bool = true) throws(LibvirtError) -> String {
        try with(key) { d throws(LibvirtError) in
            let flags = VIR_DOMAIN_XML_SECURE.rawValue | (inactive ? VIR_DOMAIN_XML_INACTIVE.rawValue : 0)
            guard let p = virDomainGetXMLDesc(d, flags) else {
                throw LibvirtError(description: "cannot read the XML of '\(key)': \(Self.lastError())")
            }
            defer { free(p) }
            return String(cString: p)
        }
    }

    /// Defines (or redefines) a domain from its XML.
    public func define(_ xml: String) throws(LibvirtError) {
        guard let d = virDomainDefineXML(conn, xml) else {
            throw LibvirtError(description: "libvirt refused the domain XML: \(Self.lastError())")
        }
        virDomainFree(d)
    }

    /// Starts a defined domain (virDomainCreate).
    public func start(_ key: String) throws(LibvirtError) {
        try with(key) { d throws(LibvirtError) in
            guard virDomainCreate(d) == 0 else { throw LibvirtError(description: "cannot start '\(key)': \(Self.lastError())") }
        }
    }

    /// Stops a running domain at once, as pulling its plug does (virDomainDestroy).
    public func destroy(_ key: String) throws(LibvirtError) {
        try with(key) { d throws(LibvirtError) in
            guard virDomainDestroy(d) == 0 else { throw LibvirtError(description: "cannot destroy '\(key)': \(Self.lastError())") }
        }
    }

    /// Removes a domain's persistent definition (virDomainUndefine).
    public func undefine(_ key: String) throws(LibvirtError) {
        try with(key) { d throws(LibvirtError) in
            guard virDomainUndefine(d) == 0 else { throw LibvirtError(description: "cannot undefine '\(key)': \(Self.lastError())") }
        }
    }

    /// Saves a running domain's state to `path` and stops it (virDomainSave).
    public func save(_ key: String, to path: String) throws(LibvirtError) {
        try with(key) { d throws(LibvirtError) in
            guard virDomainSave(d, path) == 0 else { throw LibvirtError(description: "cannot save '\(key)' to \(path): \(Self.lastError())") }
        }
    }

    /// Starts a domain again from a saved state (virDomainRestore).
    public func restore(from path: String) throws(LibvirtError) {
        guard virDomainRestore(conn, path) == 0 else {
            throw LibvirtError(description: "cannot restore from \(path): \(Self.lastError())")
        }
    }
}
