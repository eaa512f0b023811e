import Glibc
import Logging
import PrezeroCore
import PrezeroSys

/// Zeroing a released file in place, and proving it zero.
enum Scrub {
    /// Measures memset against non-temporal stores on this host and returns the faster,
    /// unless the config names one.
    static func chooseMethod(_ wanted: ZeroMethod, logger: Logger) -> ZeroMethod {
        guard wanted == .auto else {
            logger.info("scrub zeroing method \(wanted.rawValue) (from config)")
            return wanted
        }
        let m = measure(bytes: 64 << 20, rounds: 3)
        let pick: ZeroMethod = m.nontemporal > m.memset ? .nontemporal : .memset
        logger.info("scrub zeroing method \(pick.rawValue) (measured: memset \(Int(m.memset / 1e6)) MB/s, non-temporal \(Int(m.nontemporal / 1e6)) MB/s)")
        return pick
    }

    /// Best-of-`rounds` throughput of each method, in bytes per second, over an anonymous buffer.
    static func measure(bytes: Int, rounds: Int) -> (memset: Double, nontemporal: Double) {
        guard let p = malloc(bytes) else { return (1, 0) }
        defer { free(p) }
        Zeroing.fill(p, bytes, byte: 1)  // fault it in first
        func best(_ f: (UnsafeMutableRawPointer, Int) -> Void) -> Double {
            var b = 0.0
            for _ in 0..<rounds {
                let t = monotonicSeconds()
                f(p, bytes)
                b = max(b, Double(bytes) / max(monotonicSeconds() - t, 1e-9))
            }
            return b
        }
        return (best(Zeroing.memsetZero), best(Zeroing.nontemporal))
    }

    static func zero(_ method: ZeroMethod, _ p: UnsafeMutableRawPointer, _ n: Int) {
        if method == .nontemporal { Zeroing.nontemporal(p, n) } else { Zeroing.memsetZero(p, n) }
    }

    /// Checks that a mapping reads back as zero: every byte (`full`), or the first,
    /// last and a middle cache line of every page (`sample`).
    static func verify(_ map: Mapping, pageSize: Int, mode: VerifyMode) -> Bool {
        if mode == .full { return Zeroing.isZero(map.base, map.length) }
        let line = 64
        var off = 0
        while off < map.length {
            for at in [off, off + pageSize / 2, off + pageSize - line] where at + line <= map.length {
                if !Zeroing.isZero(map.base + at, line) { return false }
            }
            off += pageSize
        }
        return true
    }
}

extension PoolDaemon {
    /// fallocate that reports a node out of pages (ENOSPC) as false rather than an error.
    func allocateUnlessFull(_ fd: Descriptor, offset: UInt64, length: UInt64) throws(SysError) -> Bool {
        do {
            try Files.allocate(fd, offset: offset, length: length)
            return true
        } catch {
            if error.errno == ENOSPC { return false }
            throw error
        }
    }

    /// Scrubs `dirty/<f>`: moved to `scrubbing/`, holes filled on this node, zeroed
    /// within the bandwidth budget, verified, then moved to `clean/`. A shutdown
    /// stops it at a chunk boundary and it goes back to `dirty/`. A file that cannot
    /// be scrubbed is given back to the kernel, never made clean.
    func scrub(_ k: NodeKey, _ f: PoolFileName) {
        let pool = pools[k.mount]
        let ps = pool.mount.pageSize
        let name = f.description
        let started = monotonicSeconds()
        func finish(_ to: PoolState?, _ newName: PoolFileName?) {
            book.withLock { b in
                b.nodes[k]?.scrubbing.removeAll { $0 == f }
                guard let to, let newName else { return }
                if to == .clean { b.nodes[k]?.clean.append(newName) }
                if to == .dirty { b.nodes[k]?.dirty.append(newName) }
            }
        }
        do {
            try pool.move(.dirty, name, to: .scrubbing, name)
        } catch {
            logger.error("scrub: cannot take dirty/\(name): \(error); retrying later")
            finish(.dirty, f)
            sleepSeconds(1)
            return
        }
        do {
            let fd = try pool.open(.scrubbing, name)
            let size = try Files.status(fd).size
            let budget = config.scrub.bandwidth.resolve(totalBytes: 0)
            let chunk = WorkChunk.bytes(configured: config.scrub.chunk.resolve(totalBytes: 0), budget: budget, pageSize: ps)
            let rate = Double(budget)
            var bucket = TokenBucket(rate: rate, burst: Double(chunk), now: monotonicSeconds(), full: false)
            var done: UInt64 = 0
            // A file the VMM discarded whole (QEMU <discard/> punches every page at exit)
            // holds nothing of its guest: refilled, its pages come zeroed by the kernel.
            let discarded = try config.scrub.strategy == .zero && size > 0 && Files.allocatedBytes(fd) == 0
            // A VMM that discarded pages (QEMU <discard/>) leaves holes: refill them first,
            // under this node's binding and in chunks (pages already there are skipped), so
            // that no write below can fault a page in, and SIGBUS can never hit the daemon.
            if config.scrub.strategy == .zero {
                var at: UInt64 = 0
                while at < size {
                    let n = min(chunk, size - at)
                    guard !stopping else { break }
                    guard try allocateUnlessFull(fd, offset: at, length: n) else {
                        logger.info("scrub of \(name): no free page to refill its holes; giving it back to the kernel")
                        try pool.unlink(.scrubbing, name)
                        finish(nil, nil)
                        return
                    }
                    at += n
                }
            }
            if config.scrub.strategy == .kernel {
                try Files.punchHole(fd, offset: 0, length: size)
            }
            var map: Mapping? = nil
            if discarded && !stopping {
                logger.info("scrub of \(name): every page was discarded; refilled by the kernel, nothing to zero")
                done = size
            } else if config.scrub.strategy == .zero && !discarded {
                // Fault the pages in up front: they exist, so nothing is allocated or zeroed here.
                map = try Mapping(fd, length: Int(size))
                try map?.populateWrite()
            }
            while done < size {
                if stopping {
                    if config.scrub.strategy == .kernel { try Files.truncate(fd, to: done) }
                    let back = f.resized(config.scrub.strategy == .kernel ? done : size)
                    if back.bytes == 0 { try pool.unlink(.scrubbing, name) } else { try pool.move(.scrubbing, name, to: .dirty, back.description) }
                    finish(back.bytes == 0 ? nil : .dirty, back)
                    logger.info("scrub of \(name) stopped at \(done) of \(size) bytes for shutdown; it stays dirty")
                    return
                }
                let n = min(chunk, size - done)
                sleepSeconds(bucket.take(Double(n), now: monotonicSeconds()))
                if let map {
                    Scrub.zero(zero, map.base + Int(done), Int(n))
                } else if !(try allocateUnlessFull(fd, offset: done, length: n)) {
                    break  // someone took the pages meanwhile: keep the zeroed prefix only
                }
                done += n
            }
            if done < size {
                try Files.punchHole(fd, offset: done, length: size - done)
                try Files.truncate(fd, to: done)
            }
            let clean = f.resized(done)
            if done == 0 {
                try pool.unlink(.scrubbing, name)
                finish(nil, nil)
                return
            }
            if map == nil { map = try Mapping(fd, length: Int(done)) }
            guard let check = map, Scrub.verify(check, pageSize: Int(ps), mode: config.scrub.verify) else {
                logger.critical("scrub of \(name) did not read back as zero; giving its pages back to the kernel")
                try pool.unlink(.scrubbing, name)
                finish(nil, nil)
                return
            }
            try pool.move(.scrubbing, name, to: .clean, clean.description)
            let secs = monotonicSeconds() - started
            finish(.clean, clean)
            book.withLock { b in
                b.nodes[k]?.stats.scrubbedBytes += done
                if secs > 0 { b.nodes[k]?.stats.scrubRate = Double(done) / secs }
            }
            logger.debug("scrubbed \(name) on node \(k.node)", metadata: ["seconds": "\(secs)", "strategy": "\(config.scrub.strategy.rawValue)"])
        } catch {
            logger.error("scrub of \(name) failed: \(error); giving its pages back to the kernel")
            try? pool.unlink(.scrubbing, name)
            finish(nil, nil)
        }
    }
}
