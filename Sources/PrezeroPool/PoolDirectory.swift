import Glibc
import PrezeroCore
import PrezeroHost
import PrezeroSys

/// The pool directories on one mount: `<mount>/<pool_dir>/{filling,clean,leased,quarantine}`.
/// Every state change is a rename between two of them; every name is opened
/// relative to these descriptors and never through a symlink.
public final class PoolDirectory: Sendable {
    public let mount: PoolMount
    public let root: Descriptor
    public let rootPath: String
    let dirs: [FileState: Descriptor]
    public let device: FileStatus

    /// Opens (creating when missing) the pool root `name` on the mount and its state directories,
    /// all made root's with mode 0700, and removes what earlier versions kept there.
    public init(mount: PoolMount, name: String) throws {
        let mountDir = try Files.openDirectory(path: mount.path)
        root = try Files.openDirectory(in: mountDir, name: name, createMode: 0o700)
        rootPath = mount.path.hasSuffix("/") ? mount.path + name : mount.path + "/" + name
        // Root-only, whatever it was created as.
        try Files.setOwner(root, uid: 0, gid: 0, mode: 0o700)
        var d: [FileState: Descriptor] = [:]
        for s in FileState.allCases {
            let fd = try Files.openDirectory(in: root, name: s.rawValue, createMode: 0o700)
            try Files.setOwner(fd, uid: 0, gid: 0, mode: 0o700)
            d[s] = fd
        }
        dirs = d
        device = try Files.status(root)
        self.mount = mount
        // Pools of earlier versions kept released files in dirty/ and scrubbing/ to zero them
        // in place: a former guest's memory, never to be handed out. Their pages go back.
        for legacy in Self.legacyDirectories where (try? Files.status(in: root, name: legacy)) != nil {
            Files.removeTree("\(rootPath)/\(legacy)")
        }
    }

    static let legacyDirectories = ["dirty", "scrubbing"]

    /// The descriptor of `s`'s directory.
    public func dir(_ s: FileState) -> Descriptor { dirs[s]! }

    /// Is this directory the pool root or one of its state directories?
    func isPoolDirectory(_ st: FileStatus) -> Bool {
        st.device == device.device
            && ([device.inode] + dirs.values.compactMap { try? Files.status($0).inode }).contains(st.inode)
    }

    /// The absolute path of `name` in `s`'s directory, for logs and messages.
    public func path(_ s: FileState, _ name: String) -> String { "\(rootPath)/\(s.rawValue)/\(name)" }

    /// Never waits on a lease: a tenant owns its leased file and may take a lease on it
    /// itself, which would hold every open of it by prezerod (a release's, a take-back's, the
    /// monitor's) for the kernel's lease-break time; the open fails with EAGAIN instead, and
    /// the take-back is asked again later, as for any file still in use.
    func open(_ s: FileState, _ name: String, create: Bool = false) throws(SysError) -> Descriptor {
        try Files.openFile(in: dir(s), name: name, create: create, nonBlocking: true)
    }

    /// Everything in the state directories, as recovery sees it.
    func listing() throws(SysError) -> [ListedFile] {
        var out: [ListedFile] = []
        for s in FileState.allCases {
            for name in try Files.list(dir(s)) {
                guard let st = try Files.status(in: dir(s), name: name) else { continue }
                out.append(ListedFile(state: s, name: name, isRegular: st.isRegular, links: st.links,
                                      bytes: st.size, rootOnly: st.uid == 0 && st.permissions & 0o077 == 0, inode: st.inode))
            }
        }
        // Anything else directly under the pool root is not ours either.
        return out
    }
}
