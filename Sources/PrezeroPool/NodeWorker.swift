import Dispatch
import Glibc
import PrezeroCore
import PrezeroSys

/// The worker of one (mount, node): pinned to the node's CPUs, its memory bound
/// to the node, so that every page it fills or faults in lands there.
extension PoolDaemon {
    func workerLoop(_ k: NodeKey) {
        let pool = pools[k.mount]
        let cpus = Numa.cpus(ofNode: k.node)
        do {
            try Numa.pinThread(toCPUs: cpus)
        } catch {
            logger.error("worker \(pool.mount.path) node \(k.node): cannot pin to CPUs \(cpus): \(error)")
        }
        Numa.bindMemory(toNode: k.node)
        logger.info("worker started", metadata: ["mount": "\(pool.mount.path)", "node": "\(k.node)",
                                                 "cpus": "\(Numa.threadCPUs())", "tid": "\(Numa.threadID())"])
        while true {
            switch nextJob(k) {
            case .stop?:
                return
            case .fill(let f, let resume)?:
                fill(k, f, resume: resume)
            case .scrub(let f)?:
                scrub(k, f)
            case nil:
                _ = wakeups[k]!.wait(timeout: .now() + .milliseconds(config.monitorIntervalMs))
            }
        }
    }

    /// Picks the next job under the lock: finish cut-short fills, then scrub, then fill toward the target.
    func nextJob(_ k: NodeKey) -> Job? {
        let ps = pools[k.mount].mount.pageSize
        let counters = nodeCounters(k)
        return book.withLock { b -> Job? in
            if b.stopping { return .stop }
            guard var nb = b.nodes[k] else { return .stop }
            defer { b.nodes[k] = nb }
            if !nb.resume.isEmpty {
                let f = nb.resume.removeFirst()
                nb.filling[f] = 0
                return .fill(f, resume: true)
            }
            if !nb.dirty.isEmpty {
                let f = nb.dirty.removeFirst()
                nb.scrubbing.append(f)
                return .scrub(f)
            }
            guard monotonicSeconds() >= nb.fillBackoffUntil else { return nil }
            let target = nb.target.resolve(totalBytes: counters.total) / ps * ps
            let keep = keepFree(nb, totalBytes: counters.total, pageSize: ps, forFill: true)
            guard let size = FillPlanner.next(
                target: target, held: nb.cleanBytes + nb.fillingBytes, cleanSizes: nb.clean.map(\.bytes),
                learned: b.learned[k.mount].sizes, fileSize: nb.fileSize, freeBytes: counters.free,
                keepFree: keep, pageSize: ps)
            else { return nil }
            let f = PoolFileName(node: k.node, bytes: size, seq: b.nextSeq())
            nb.filling[f] = 0
            return .fill(f, resume: false)
        }
    }

    /// Should a fill stop before its next chunk? (shutdown, a lower target, or pages needed by others)
    func fillShouldStop(_ k: NodeKey, chunk: UInt64) -> Bool {
        let ps = pools[k.mount].mount.pageSize
        let counters = nodeCounters(k)
        return book.withLock { b in
            guard !b.stopping, let nb = b.nodes[k] else { return true }
            let target = nb.target.resolve(totalBytes: counters.total) / ps * ps
            let keep = keepFree(nb, totalBytes: counters.total, pageSize: ps, forFill: true)
            return nb.cleanBytes + nb.fillingBytes > target || counters.free < keep + chunk
        }
    }

    /// Fills `filling/<f>` by fallocate in chunks; the kernel zeroes each page
    /// in this thread, on this node. What was filled goes to `clean/`.
    func fill(_ k: NodeKey, _ f: PoolFileName, resume: Bool) {
        let pool = pools[k.mount]
        let ps = pool.mount.pageSize
        let budget = config.fillBandwidth.resolve(totalBytes: 0)
        let chunk = WorkChunk.bytes(configured: config.fillChunk.resolve(totalBytes: 0), budget: budget, pageSize: ps)
        let started = monotonicSeconds()
        var done: UInt64 = 0
        var fresh: UInt64 = 0
        do {
            let fd = try pool.open(.filling, f.description, create: !resume)
            if resume { done = try Files.allocatedBytes(fd) / ps * ps }
            let had = done
            var bucket = TokenBucket(rate: Double(budget), burst: Double(chunk), now: monotonicSeconds(), full: false)
            while done < f.bytes {
                let n = min(chunk, f.bytes - done)
                sleepSeconds(bucket.take(Double(n), now: monotonicSeconds()))
                if fillShouldStop(k, chunk: n) { break }
                guard try allocateUnlessFull(fd, offset: done, length: n) else {
                    logger.debug("fill on node \(k.node) stopped: no free pages left on the node or the mount")
                    if done == had {
                        book.withLock { $0.nodes[k]?.fillBackoffUntil = monotonicSeconds() + 1 }
                    }
                    break
                }
                done += n
                book.withLock { $0.nodes[k]?.filling[f] = done }
            }
            fresh = done - had
            if done < f.bytes {
                // A cut-short fallocate may leave pages past the size; give them back.
                try Files.punchHole(fd, offset: done, length: f.bytes - done)
                try Files.truncate(fd, to: done)
            }
            let final = f.resized(done)
            if done == 0 {
                try pool.unlink(.filling, f.description)
            } else {
                try pool.move(.filling, f.description, to: .clean, final.description)
            }
            let secs = monotonicSeconds() - started
            book.withLock { b in
                b.nodes[k]?.filling[f] = nil
                if done > 0 { b.nodes[k]?.clean.append(final) }
                b.nodes[k]?.stats.filledBytes += fresh
                if fresh > 0, secs > 0 { b.nodes[k]?.stats.fillRate = Double(fresh) / secs }
            }
            if done > 0 {
                logger.debug("filled \(final) on node \(k.node)", metadata: ["seconds": "\(secs)"])
            }
        } catch {
            logger.error("fill of \(f) on node \(k.node) failed: \(error); discarding it")
            try? pool.unlink(.filling, f.description)
            book.withLock { $0.nodes[k]?.filling[f] = nil }
            sleepSeconds(1)  // do not spin on a persistent error
        }
    }
}
