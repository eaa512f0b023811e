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
    /// The uid the claim is for (root for the hook's), journalled with the lease.
    public var claimant: UInt32 = 0

    public var bytes: UInt64 { request.bytes }
    public var node: Int { picked.node }
    public var handedOut: PoolFileName { picked.resized(bytes) }
    public var leased: FileRef { FileRef(mount, .leased, LeasedName(key: key, file: handedOut).description) }
}

/// What recovery found one listed file to be, resolved against this host.
public enum RecoveryStep: Sendable, Equatable {
    /// A pool file to keep where it is, in clean/ or (a cut-short fill) filling/.
    case adopt(FileState, PoolFileName)
    case adoptLease(Lease)
    case giveBack(FileState, name: String)
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
    /// A lease that has ended: its file taken back (`Effect.takeBack`), never reused.
    case recycle(Lease)
    case fillEnd(NodeKey, PoolFileName, done: UInt64, fresh: UInt64, seconds: Double)
    /// A fill that failed: its file goes back to the kernel.
    case discard(NodeKey, FileRef)
    /// A fill cut short by a crash, waiting to be resumed.
    case giveBackResume(NodeKey, PoolFileName)
    case giveBackClean(NodeKey, PoolFileName, keep: UInt64)
    case recover(mount: Int, RecoveryStep)

    public var description: String {
        switch self {
        case .claim(let t): "claim \(t.picked) for lease \(t.key)"
        case .release(let l): "release of lease \(l.key)"
        case .recycle(let l): "take-back of lease \(l.key)"
        case .fillEnd(_, let f, _, _, _): "end of the fill of \(f)"
        case .discard(_, let r): "discard of \(r)"
        case .giveBackResume(_, let f): "give-back of filling/\(f)"
        case .giveBackClean(_, let f, _): "give-back of clean/\(f)"
        case .recover(_, let s): "recovery step \(s)"
        }
    }

    /// The effects, in the order they are performed.
    public var effects: [Effect] {
        switch self {
        case .claim(let t):
            let from = FileRef(t.mount, t.source, t.picked.description)
            var e: [Effect] = [.checkSole(from), .rename(from, to: t.leased)]
            switch t.outcome {
            case .truncated: e.append(.truncate(t.leased, to: t.bytes))
            case .partial: e.append(.allocate(t.leased, offset: t.picked.bytes, length: t.bytes - t.picked.bytes, node: t.node))
            case .hit, .miss: break
            }
            let r = t.request
            return e + [.setOwner(t.leased, uid: r.uid, gid: r.gid, mode: r.mode), .journal(lease: t.key, destination: r.dest, claimant: t.claimant),
                        .link(t.leased, destination: r.dest)]
        case .release(let l):
            var e: [Effect] = [.setOwner(l.ref, uid: 0, gid: 0, mode: 0o600)]
            if let d = l.dest { e.append(.unlinkLink(l.ref, destination: d)) }
            return e
        case .recycle(let l):
            // Root's first, so that its former owner cannot open it again by any name it kept.
            return [.setOwner(l.ref, uid: 0, gid: 0, mode: 0o600), l.heldRecord(l.file.bytes), .takeBack(l.ref, node: l.file.node)]
        case .fillEnd(let k, let f, let done, _, _):
            let ref = FileRef(k.mount, .filling, f.description)
            // A cut-short fallocate may leave pages past the size; give them back.
            var e: [Effect] = done < f.bytes ? [.punch(ref, offset: done, length: f.bytes - done), .truncate(ref, to: done)] : []
            e += done == 0 ? [.unlink(ref)] : [.checkSole(ref), .rename(ref, to: FileRef(k.mount, .clean, f.resized(done).description))]
            return e
        case .discard(_, let ref):
            return [.unlink(ref)]
        case .giveBackResume(let k, let f):
            return [.unlink(FileRef(k.mount, .filling, f.description))]
        case .giveBackClean(let k, let f, let keep):
            let ref = FileRef(k.mount, .clean, f.description)
            if keep == 0 { return [.unlink(ref)] }
            return [.truncate(ref, to: keep), .rename(ref, to: FileRef(k.mount, .clean, f.resized(keep).description))]
        case .recover(let mi, let step):
            switch step {
            case .adopt, .adoptLease, .countQuarantined:
                return []
            case .giveBack(let state, let name):
                return [.unlink(FileRef(mi, state, name))]
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
            guard failed > 1 else { return [] }  // the check or the rename failed: nothing moved
            let cut = t.outcome == .truncated || t.outcome == .partial ? 1 : 0
            var e: [Effect] = []
            if t.outcome == .partial {
                // An extension may have got some of its pages: back to the file's old size.
                e += [.punch(t.leased, offset: t.picked.bytes, length: t.bytes - t.picked.bytes), .truncate(t.leased, to: t.picked.bytes)]
            }
            if failed > 2 + cut { e.append(.setOwner(t.leased, uid: 0, gid: 0, mode: 0o600)) }
            if failed > 3 + cut { e.append(.journal(lease: t.key, destination: nil)) }
            // Never linked anywhere: still zero, and back to clean/ under the name of its size.
            e.append(.rename(t.leased, to: FileRef(t.mount, .clean, t.returned(failedAt: failed).description)))
            return e
        case .fillEnd(let k, let f, _, _, _):
            return [.unlink(FileRef(k.mount, .filling, f.description))]
        case .recycle(let l):
            // Not taken back (still open somewhere): nothing of it is pinned outside.
            return failed == 2 ? [l.heldRecord(nil)] : []
        case .release, .discard, .giveBackResume, .giveBackClean, .recover:
            return []
        }
    }
}

extension Lease {
    /// The journal entry of the pages this lease left pinned outside the pool.
    public func heldRecord(_ bytes: UInt64?) -> Effect { .journalHeld(id: heldID, mount: mount, node: file.node, bytes: bytes) }
}

extension ClaimTicket {
    /// The clean file a claim that failed at effect `failed` puts back: cut to the
    /// claim's size once its truncate went through.
    public func returned(failedAt failed: Int) -> PoolFileName {
        outcome == .truncated && failed > 2 ? handedOut : picked
    }
}
