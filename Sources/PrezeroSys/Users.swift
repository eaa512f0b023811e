import Glibc
import PrezeroCShims

/// User and group names, for qemu.conf's `user` and `group`.
public enum Users {
    /// `+107` or a name.
    /// The corresponding C function is `getpwnam_r`.
    public static func uid(_ name: String) -> UInt32? {
        if name.hasPrefix("+") { return UInt32(name.dropFirst()) }
        return user(name)?.pw_uid
    }

    /// The primary group of a user.
    /// The corresponding C function is `getpwnam_r`.
    public static func primaryGid(_ name: String) -> UInt32? { user(name)?.pw_gid }

    /// The corresponding C function is `getpwnam_r`; the string fields are not kept.
    static func user(_ name: String) -> passwd? {
        var pw = passwd()
        var out: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &pw, &buf, buf.count, &out) == 0, out != nil else { return nil }
        return pw
    }

    /// `+107` or a name. The corresponding C function is `getgrnam_r`.
    public static func gid(_ name: String) -> UInt32? {
        if name.hasPrefix("+") { return UInt32(name.dropFirst()) }
        var gr = group()
        var out: UnsafeMutablePointer<group>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &gr, &buf, buf.count, &out) == 0, out != nil else { return nil }
        return gr.gr_gid
    }
}
