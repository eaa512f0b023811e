import Glibc

// Read and written by the signal handler only through these word-sized globals.
nonisolated(unsafe) private var forwardTarget: pid_t = 0
nonisolated(unsafe) private var pendingSignal: Int32 = 0

/// Signals passed on to a child process: the one place prezero installs signal handlers.
public enum Signals {
    /// From now on, each of `signals` is passed to the process given to `forward(to:)`.
    /// One that arrives before there is such a process is kept (see `pending`).
    /// The corresponding C functions are `pthread_sigmask(SIG_UNBLOCK)` and `signal`.
    public static func forward(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        // Inherited blocked, they would never arrive.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for s in signals {
            signal(s) { sig in
                if forwardTarget > 0 { kill(forwardTarget, sig) } else { pendingSignal = sig }
            }
        }
    }

    /// Ignores SIGIO: the kernel sends it to a write lease's holder when someone opens the
    /// file (a lease break), and its default action ends the process. prezerod holds one
    /// for each take-back; an open meanwhile (root's, or its own release of that lease on
    /// another thread) then waits for the lease to go instead of killing the daemon.
    /// The corresponding C function is `signal(SIGIO, SIG_IGN)`.
    public static func ignoreLeaseBreaks() { signal(SIGIO, SIG_IGN) }

    /// The child to pass signals to.
    public static func forward(to pid: pid_t) { forwardTarget = pid }

    /// The last forwarded signal that came before a child was set, or 0.
    public static var pending: Int32 { pendingSignal }
}
