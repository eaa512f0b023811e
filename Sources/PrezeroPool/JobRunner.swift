import Logging
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// The workers' jobs: a fill of a new file, one chunk at a time, paced by the node's
/// shared bandwidth budget. It asks the engine (`PoolEngine`) what to do next and tells it
/// what each chunk did; it performs a chunk's effect through the file system itself, and
/// a job's start and end as the engine's operations.
public final class JobRunner: Sendable {
    let engine: PoolEngine
    /// Each node's fill budget (`fill_bandwidth`), shared by all of its workers.
    let budgets = Mutex<[NodeKey: TokenBucket]>([:])

    /// A runner with the engine's file system, clock and configuration.
    public init(engine: PoolEngine) { self.engine = engine }

    var fs: any PoolFileSystem { engine.fs }
    var logger: Logger { engine.logger }
    var config: Config { engine.config }
    func clock() -> Double { engine.clock() }
    func pause(_ seconds: Double) { engine.pause(seconds) }

    /// What the node's worker does next, from the node's counters now; nil when there is nothing.
    public func nextJob(_ k: NodeKey) -> Job? { engine.nextJob(k, counters: fs.counters(k)) }

    /// Runs a job to its end, waiting where the bandwidth budget says.
    public func perform(_ job: Job, on k: NodeKey) {
        var run = begin(job, on: k)
        while let wait = advance(&run) { pause(wait) }
    }

    /// Performs one effect of a fill; a failure discards its file (its pages go back to
    /// the kernel, never to `clean/`). ENOSPC on an allocation is reported as `false`,
    /// not as a failure.
    func step(_ e: Effect, _ run: JobRun, _ what: String) -> Bool? {
        do throws(EffectError) {
            _ = try fs.perform(e)
            return true
        } catch {
            if case .allocate = e, error.isNoSpace { return false }
            logger.error("\(what) of \(run.ref) failed: \(e): \(error); giving its pages back to the kernel")
            engine.run(.discard(run.key, run.ref))
            pause(1)  // do not spin on a persistent error
            return nil
        }
    }

    /// Starts `job` on `k`: the run that `advance` takes one step at a time.
    public func begin(_ job: Job, on k: NodeKey) -> JobRun {
        let ps = engine.pageSize(k)
        switch job {
        case .fill(let f, let resume):
            let budget = config.fillBandwidth.resolve(totalBytes: 0)
            let chunk = WorkChunk.bytes(configured: config.fillChunk.resolve(totalBytes: 0), budget: budget, pageSize: ps)
            budgets.withLock { b in
                if b[k] == nil { b[k] = TokenBucket(rate: Double(budget), burst: Double(chunk), now: clock(), full: false) }
            }
            return JobRun(key: k, job: job, file: f, ref: FileRef(k.mount, .filling, f.description), phase: resume ? .resume : .create,
                          chunk: chunk, started: clock(), pageSize: ps)
        case .stop:
            return JobRun(key: k, job: job, file: PoolFileName(node: k.node, bytes: 0, seq: 0),
                          ref: FileRef(k.mount, .filling, ""), phase: .over, chunk: ps, started: 0, pageSize: ps)
        }
    }

    /// The wait the node's shared budget asks before a chunk of `n` bytes, once per chunk;
    /// nil to go on.
    func pace(_ r: inout JobRun, _ n: UInt64) -> Double? {
        if r.paced {
            r.paced = false
            return nil
        }
        let now = clock()
        let wait = budgets.withLock { $0[r.key]?.take(Double(n), now: now) ?? 0 }
        guard wait > 0 else { return nil }
        r.paced = true
        return wait
    }

    /// Advances a job by one step (at most one chunk of work). Returns how long to wait
    /// before the next step, or nil when the job is over.
    public func advance(_ r: inout JobRun) -> Double? {
        let k = r.key, f = r.file, ref = r.ref
        switch r.phase {
        case .over:
            return nil

        // Fill: fallocate in chunks; the kernel zeroes each page on the node. What was
        // filled goes to `clean/`.
        case .create:
            guard step(.create(ref), r, "fill") != nil else { return r.over() }
            r.phase = .fill
        case .resume:
            do throws(EffectError) {
                r.done = (try fs.status(ref)?.allocated ?? 0) / r.pageSize * r.pageSize
            } catch {
                logger.error("fill of \(ref): \(error)")
            }
            r.had = r.done
            r.phase = .fill
        case .fill:
            guard r.done < f.bytes else { r.phase = .fillEnd; break }
            let n = min(r.chunk, f.bytes - r.done)
            if let wait = pace(&r, n) { return wait }
            guard engine.fillMayAllocate(k, counters: fs.counters(k), chunk: n) else { r.phase = .fillEnd; break }
            let got = step(.allocate(ref, offset: r.done, length: n, node: k.node), r, "fill")
            let done = got == true ? r.done + n : nil
            engine.fillAllocated(k, f, chunk: n, done: done)
            guard let got else { return r.over() }
            guard got else {
                logger.debug("fill on node \(k.node) stopped: no free pages left on the node or the mount")
                if r.done == r.had { engine.fillBackOff(k) }
                r.phase = .fillEnd
                break
            }
            r.done += n
        case .fillEnd:
            let secs = clock() - r.started
            if case .failure(let e) = engine.run(.fillEnd(k, f, done: r.done, fresh: r.done - r.had, seconds: secs)) {
                logger.error("fill of \(f) on node \(k.node) failed: \(e.error); discarded")
                pause(1)
            } else if r.done > 0 {
                logger.debug("filled \(f.resized(r.done)) on node \(k.node)", metadata: ["seconds": "\(secs)"])
            }
            return r.over()

        }
        return 0
    }
}

/// A worker's job in progress, advanced one step at a time by `JobRunner.advance`.
public struct JobRun: Sendable {
    enum Phase: Sendable { case create, resume, fill, fillEnd, over }
    public let key: NodeKey
    public let job: Job
    let file: PoolFileName
    public let ref: FileRef
    var phase: Phase
    let chunk: UInt64
    let started: Double
    let pageSize: UInt64
    var done: UInt64 = 0
    var had: UInt64 = 0
    /// The budget's wait before the next chunk has been served.
    var paced = false

    init(key: NodeKey, job: Job, file: PoolFileName, ref: FileRef, phase: Phase, chunk: UInt64, started: Double, pageSize: UInt64) {
        self.key = key
        self.job = job
        self.file = file
        self.ref = ref
        self.phase = phase
        self.chunk = chunk
        self.started = started
        self.pageSize = pageSize
    }

    public var isOver: Bool { phase == .over }

    mutating func over() -> Double? {
        phase = .over
        return nil
    }
}
