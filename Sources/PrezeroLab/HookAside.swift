import PrezeroSys

/// The hook set aside while `prezero bench libvirt` times libvirt's starts without it, or
/// with /bin/true in its place. The bench moves it next to `qemu.d` (libvirt runs every
/// file inside), and puts it back when done; a bench that was killed leaves it there, with
/// no hook or the /bin/true stand-in in its place. `restore` puts it back: the next bench
/// and a lab's close call it, so that a killed bench never leaves libvirt without its hook.
public struct HookAside: Sendable {
    /// The hook libvirt runs, `qemu.d/prezero`.
    public let hook: String
    /// Where the bench keeps it meanwhile: `hooks/prezero.bench-aside`.
    public let aside: String

    public init(hooksDir: String) {
        hook = hooksDir + "/prezero"
        let parent = hooksDir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        aside = parent + "/prezero.bench-aside"
    }

    /// Moves the hook aside; with `standIn`, puts a copy of that file (/bin/true) in its place.
    public func setAside(standIn: String? = nil) throws(LabError) {
        do { try Files.renamePath(hook, aside) } catch { throw LabError("cannot move the hook \(hook) aside: \(error)") }
        if let s = standIn {
            guard (try? LabCommand.check(["cp", s, hook])) != nil else {
                restore()
                throw LabError("cannot put \(s) in place of the hook \(hook)")
            }
        }
    }

    /// Puts a set-aside hook back over what stands in its place (nothing, or /bin/true).
    /// A hook that is neither, installed since, is left and the set-aside copy removed.
    public func restore() {
        guard Files.status(followingPath: aside) != nil else { return }
        let current = Files.readBytes(hook, limit: 1 << 26)
        if current == nil || current == Files.readBytes("/bin/true", limit: 1 << 26) {
            try? Files.renamePath(aside, hook)
        } else {
            try? Files.removePath(aside)
        }
    }
}
