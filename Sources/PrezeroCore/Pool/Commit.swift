import PrezeroProtocol

/// Settling an operation once its effects ran: all of them (commit), some then undone
/// (compensated), or left half done for a restart's recovery (abandon).
extension PoolState {
    /// Every effect of `op` succeeded.
    public mutating func commit(_ op: PoolOp, observed: Observed?, now: Double) {
        switch op {
        case .claim(let t):
            let k = NodeKey(mount: t.mount, node: t.node)
            leases[t.key]?.claiming = false
            if case .linked(let inode)? = observed { leases[t.key]?.inode = inode }
            nodes[k]?.stats.outcomes[t.outcome, default: 0] += 1
            settleRefill(k, now: now)
        case .release(let l):
            // Ended now: taken back as soon as no one has it open, whatever the back-off said.
            leases[l.key]?.released = true
            leases[l.key]?.nextScan = 0
        case .recycle(let l):
            leaseVanished(l)
            guard case .tookBack(let tb)? = observed else { break }
            let k = NodeKey(mount: l.mount, node: l.file.node)
            nodes[k]?.noPagesUntil = 0
            nodes[k]?.owedRefill += l.file.bytes
            nodes[k]?.held.removeAll { $0.id == l.heldID }
            if tb.held > 0 { nodes[k]?.held.append(HeldPages(id: l.heldID, lease: l.key, bytes: tb.held)) }
            nodes[k]?.stats.recycledBytes += tb.bytes - min(tb.bytes, tb.held)
            nodes[k]?.stats.recycledFiles += 1
            if tb.extraLinks > 0 {
                mounts[l.mount].outsideNames.append(ClaimantsNames(claimant: l.claimant, names: OutsideNameStatus(lease: l.key, names: tb.names, extraLinks: tb.extraLinks)))
                mounts[l.mount].outsideNames = Array(mounts[l.mount].outsideNames.suffix(16))
            }
        case .fillEnd(let k, let f, let done, let fresh, let secs):
            nodes[k]?.filling[f] = nil
            if done > 0 { nodes[k]?.clean.append(f.resized(done)) }
            nodes[k]?.stats.filledBytes += fresh
            nodes[k]?.refillBytes += fresh
            if let nb = nodes[k], nb.filling.isEmpty, nb.refillBytes > 0, now > nb.refillStarted, secs > 0 {
                nodes[k]?.stats.fillRate = Double(nb.refillBytes) / (now - nb.refillStarted)
            }
        case .discard(let k, let ref):
            forgetInFlight(k, ref)
        case .giveBackResume:
            break
        case .giveBackClean(let k, let f, let keep):
            if keep > 0 { nodes[k]?.clean.append(f.resized(keep)) }
            nodes[k]?.stats.yieldedBytes += f.bytes - keep
        case .recover(let mi, let step):
            switch step {
            case .adopt(let state, let f):
                adopt(state, f, mount: mi)
            case .adoptLease(let l):
                leases[l.key] = l
            case .giveBack:
                break
            case .quarantine, .countQuarantined:
                mounts[mi].quarantined += 1
            }
        }
    }

    mutating func adopt(_ state: FileState, _ f: PoolFileName, mount mi: Int) {
        let k = NodeKey(mount: mi, node: f.node)
        switch state {
        case .clean: nodes[k]?.clean.append(f)
        case .filling: nodes[k]?.resume.append(f)
        case .leased, .quarantine: break
        }
    }

    mutating func forgetInFlight(_ k: NodeKey, _ ref: FileRef) {
        guard let f = PoolFileName(ref.name) else { return }
        nodes[k]?.filling[f] = nil
    }

    /// Effect `failed` of `op` failed and its compensation succeeded.
    public mutating func compensated(_ op: PoolOp, failedAt failed: Int) {
        switch op {
        case .claim(let t):
            leases[t.key] = nil
            nodes[NodeKey(mount: t.mount, node: t.node)]?.clean.append(t.returned(failedAt: failed))
        case .fillEnd(let k, let f, _, _, _):
            nodes[k]?.filling[f] = nil
        case .discard(let k, let ref):
            // The file stays where it was, unknown to the state until a restart's recovery.
            forgetInFlight(k, ref)
            abandoned += 1
        case .giveBackResume(let k, let f):
            nodes[k]?.resume.append(f)
        case .giveBackClean(let k, let f, _):
            // Cut but not renamed: its name no longer says its size; recovery settles it.
            if failed == 0 { nodes[k]?.clean.append(f) } else { abandoned += 1 }
        case .recover(_, let step):
            // The file stays as it was found, unknown to the state until the next start.
            switch step {
            case .giveBack, .quarantine: abandoned += 1
            case .adopt, .adoptLease, .countQuarantined: break
            }
        case .release, .recycle:
            break  // nothing changed in the state; a later pass tries again
        }
    }

    /// The compensation failed too: the file is left where the failure left it, out of
    /// every list the state hands files out from, for a restart's recovery to settle.
    public mutating func abandon(_ op: PoolOp) {
        abandoned += 1
        switch op {
        case .claim(let t):
            // Treated as any released lease: taken back, never reused.
            leases[t.key]?.claiming = false
            leases[t.key]?.released = true
        case .fillEnd(let k, let f, _, _, _):
            nodes[k]?.filling[f] = nil
        default:
            compensated(op, failedAt: 0)
        }
    }
}

extension NodeState {
    /// A file starts filling; the first of a refill starts its clock.
    mutating func startFill(_ f: PoolFileName, now: Double) {
        if filling.isEmpty {
            refillStarted = now
            refillBytes = 0
        }
        filling[f] = 0
    }
}
