import Dispatch
import Glibc
import Logging
import PrezeroCore
import PrezeroProtocol
import PrezeroSys
import Synchronization

/// One lane's queue of whole requests and its handlers' wake-ups.
final class HandlerLane: Sendable {
    struct Job: Sendable {
        enum Payload: Sendable {
            case request(Request)
            /// Not decoded yet: a large one, decoded by its handler.
            case line([UInt8])
        }
        var id: UInt64
        var payload: Payload
        var peer: Caller
        var queued: Double
    }

    let lane: ControlLane
    let queue = Locked<(jobs: [Job], head: Int, stopping: Bool)>(([], 0, false))
    let ready = DispatchSemaphore(value: 0)

    init(_ lane: ControlLane) { self.lane = lane }

    func submit(_ job: Job) {
        queue.withLock { $0.jobs.append(job) }
        ready.signal()
    }

    /// The next request, waiting for one, and whether the lane has stopped (then it is only
    /// to be answered so); nil once the lane stops and its queue is empty.
    func next() -> (Job, stopping: Bool)? {
        while true {
            ready.wait()
            let job: (Job, Bool)?? = queue.withLock { q in
                guard q.head < q.jobs.count else { return q.stopping ? .some(nil) : nil }
                let j = q.jobs[q.head]
                q.head += 1
                if q.head == q.jobs.count { q.jobs.removeAll(keepingCapacity: true); q.head = 0 }
                return .some((j, q.stopping))
            }
            if let job { return job }
        }
    }

    func stop() {
        queue.withLock { $0.stopping = true }
        for _ in 0..<lane.handlers { ready.signal() }
    }
}
