import PrezeroProtocol

/// A claim in progress: what the state set aside for it, and how it ends.
public struct ClaimTicket: Sendable, Equatable {
    public var key: String
    public var mount: Int
    /// The clean file taken, as it was in `clean/`.
    public var picked: PoolFileName
    public var outcome: ClaimOutcome
    public var request: ClaimRequest
    /// The directory the file is taken from. A claim takes only from `clean/` (invariant 1).
    public var source: FileState = .clean

    public var bytes: UInt64 { request.bytes }
    public var node: Int { picked.node }
    public var handedOut: PoolFileName { picked.resized(bytes) }
    public var leased: FileRef { FileRef(mount, .leased, LeasedName(key: key, file: handedOut).description) }
}

/// What recovery found one listed file to be, resolved against this host.
public enum RecoveryStep: Sendable, Equatable {
    /// A pool file to keep where it is, in clean/, dirty/ or (a cut-short fill) filling/.
    case adopt(FileState, PoolFileName)
    case adoptLease(Lease)
    case move(from: FileState, name: String, to: FileState, newName: String)
    case quarantine(FileState, name: String, as: String, reason: String)
    /// Already in quarantine/: counted, nothing else.
    case countQuarantined
}

/// A transition's file work: the effects to perform in order, and how the state
/// settles when they all succeed (`commit`), when one fails (`compensation`, then
/// `compensated`), or when even the compensation fails (`abandon`). This is the
/// one way the pool undoes half-done work; no call site writes its own rollback.
public enum PoolOp: Sendable, Equatable, CustomStringConvertible {
    case claim(ClaimTicket)
    case release(Lease)
    case reclaim(Lease, size: UInt64)
    case fillEnd(NodeKey, PoolFileName, done: UInt64, fresh: UInt64, seconds: Double)
    /// A fill or scrub that failed: its file goes back to the kernel.
    case discard(NodeKey, FileRef)
    case scrubTake(NodeKey, PoolFileName)
    case scrubStop(NodeKey, PoolFileName, done: UInt64, kernel: Bool)
    case scrubEnd(NodeKey, PoolFileName, size: UInt64, done: UInt64, seconds: Double)
    /// A whole dirty file, or a cut-short fill waiting to be resumed.
    case giveBackWhole(NodeKey, FileState, PoolFileName)
    case giveBackClean(NodeKey, PoolFileName, keep: UInt64)
    case recover(mount: Int, RecoveryStep)

    public var description: String {
        switch self {
        case .claim(let t): "claim \(t.picked) for lease \(t.key)"
        case .release(let l): "release of lease \(l.key)"
        case .reclaim(let l, _): "reclaim of lease \(l.key)"
        case .fillEnd(_, let f, _, _, _): "end of the fill of \(f)"
        case .discard(_, let r): "discard of \(r)"
        case .scrubTake(_, let f): "scrub of dirty/\(f)"
        case .scrubStop(_, let f, _, _): "stop of the scrub of \(f)"
        case .scrubEnd(_, let f, _, _, _): "end of the scrub of \(f)"
        case .giveBackWhole(_, let s, let f): "give-back of \(s.rawValue)/\(f)"
        case .giveBackClean(_, let f, _): "give-back of clean/\(f)"
        case .recover(_, let s): "recovery step \(s)"
        }
    }

    /// The effects, in the order they are performed.
    public var effects: [Effect] {
        switch self {
        case .claim(let t):
            var e: [Effect] = [.rename(FileRef(t.mount, t.source, t.picked.description), to: t.leased)]
            switch t.outcome {
            case .truncated: e.append(.truncate(t.leased, to: t.bytes))
            case .partial: e.append(.allocate(t.leased, offset: t.picked.bytes, length: t.bytes - t.picked.bytes, node: t.node))
            case .hit, .miss: break
            }
            let r = t.request
            return e + [.setOwner(t.leased, uid: r.uid, gid: r.gid, mode: r.mode), .journal(lease: t.key, destination: r.dest),
                        .link(t.leased, destination: r.dest)]
        case .release(let l):
            var e: [Effect] = [.setOwner(l.ref, uid: 0, gid: 0, mode: 0o600)]
            if let d = l.dest { e.append(.unlinkLink(l.ref, destination: d)) }
            return e
        case .reclaim(let l, let size):
            var e: [Effect] = [.setOwner(l.ref, uid: 0, gid: 0, mode: 0o600)]
            // A holder may have grown the file: cut back to the size handed out.
            if size > l.file.bytes { e.append(.truncate(l.ref, to: l.file.bytes)) }
            e.append(.rename(l.ref, to: FileRef(l.mount, .dirty, l.file.resized(min(size, l.file.bytes)).description)))
            return e
        case .fillEnd(let k, let f, let done, _, _):
            let ref = FileRef(k.mount, .filling, f.description)
            // A cut-short fallocate may leave pages past the size; give them back.
            var e: [Effect] = done < f.bytes ? [.punch(ref, offset: done, length: f.bytes - done), .truncate(ref, to: done)] : []
            e.append(done == 0 ? .unlink(ref) : .rename(ref, to: FileRef(k.mount, .clean, f.resized(done).description)))
            return e
        case .discard(_, let ref):
            return [.unlink(ref)]
        case .scrubTake(let k, let f):
            return [.rename(FileRef(k.mount, .dirty, f.description), to: FileRef(k.mount, .scrubbing, f.description))]
        case .scrubStop(let k, let f, let done, let kernel):
            let ref = FileRef(k.mount, .scrubbing, f.description)
            // Zeroing in place leaves a whole file, part zero; the kernel strategy leaves only the refilled prefix.
            let back = kernel ? f.resized(done) : f
            var e: [Effect] = kernel ? [.truncate(ref, to: done)] : []
            e.append(back.bytes == 0 ? .unlink(ref) : .rename(ref, to: FileRef(k.mount, .dirty, back.description)))
            return e
        case .scrubEnd(let k, let f, let size, let done, _):
            let ref = FileRef(k.mount, .scrubbing, f.description)
            let e: [Effect] = done < size ? [.punch(ref, offset: done, length: size - done), .truncate(ref, to: done)] : []
            if done == 0 { return e + [.unlink(ref)] }
            return e + [.verify(ref, bytes: done), .rename(ref, to: FileRef(k.mount, .clean, f.resized(done).description))]
        case .giveBackWhole(let k, let s, let f):
            return [.unlink(FileRef(k.mount, s, f.description))]
        case .giveBackClean(let k, let f, let keep):
            let ref = FileRef(k.mount, .clean, f.description)
            if keep == 0 { return [.unlink(ref)] }
            return [.truncate(ref, to: keep), .rename(ref, to: FileRef(k.mount, .clean, f.resized(keep).description))]
        case .recover(let mi, let step):
            switch step {
            case .adopt, .adoptLease, .countQuarantined:
                return []
            case .move(let from, let name, let to, let newName):
                let ref = FileRef(mi, from, name)
                // A lease's file may still be its former owner's.
                let own: [Effect] = from == .leased ? [.setOwner(ref, uid: 0, gid: 0, mode: 0o600)] : []
                return own + [.rename(ref, to: FileRef(mi, to, newName))]
            case .quarantine(let state, let name, let newName, _):
                return [.rename(FileRef(mi, state, name), to: FileRef(mi, .quarantine, newName))]
            }
        }
    }

    /// The effects that put things back after effect `failed` (0-based) failed,
    /// the effects before it having succeeded.
    public func compensation(failedAt failed: Int) -> [Effect] {
        switch self {
        case .claim(let t):
            guard failed > 0 else { return [] }  // the rename did not happen: nothing moved
            let cut = t.outcome == .truncated || t.outcome == .partial ? 1 : 0
            var e: [Effect] = []
            if t.outcome == .partial {
                // An extension may have got some of its pages: back to the file's old size.
                e += [.punch(t.leased, offset: t.picked.bytes, length: t.bytes - t.picked.bytes), .truncate(t.leased, to: t.picked.bytes)]
            }
            if failed > 1 + cut { e.append(.setOwner(t.leased, uid: 0, gid: 0, mode: 0o600)) }
            if failed > 2 + cut { e.append(.journal(lease: t.key, destination: nil)) }
            // Never linked anywhere: still zero, and back to clean/ under the name of its size.
            let size = t.outcome == .truncated && failed > 1 ? t.bytes : t.picked.bytes
            e.append(.rename(t.leased, to: FileRef(t.mount, .clean, t.picked.resized(size).description)))
            return e
        case .fillEnd(let k, let f, _, _, _):
            return [.unlink(FileRef(k.mount, .filling, f.description))]
        case .scrubStop(let k, let f, _, _), .scrubEnd(let k, let f, _, _, _):
            // Not provably zero: its pages go back to the kernel.
            return [.unlink(FileRef(k.mount, .scrubbing, f.description))]
        case .release, .reclaim, .discard, .scrubTake, .giveBackWhole, .giveBackClean, .recover:
            return []
        }
    }
}
