import CSystem

#if canImport(Glibc)
import Glibc
#endif

/// CPU priority of the threads that compute (the sync pool, deliveryd's workers) against the threads that
/// only answer or keep books (the api pool, the group-commit writer, deliveryd's claim loop, dispatcher and
/// recorder). Compute runs under SCHED_IDLE (and niced): it gets the CPU that answering leaves, so however
/// much of it is queued, /async and /healthz keep theirs. Nice alone was not enough: ten nice-10 threads
/// weigh more than one nice-0 thread, and the async p99 rose 6x in a sync storm (scripts/bench).
public enum Priority {
    /// Nice value of compute threads (0 is the default; 19 the weakest).
    public static let compute: Int32 = 10

    /// Lowers the calling thread's priority to `compute`. Linux applies nice per thread (`who` 0 is the
    /// calling thread); raising it back would need privileges, so only threads that compute for their
    /// whole life call this.
    public static func makeCurrentThreadCompute() {
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, compute)
        _ = workfcgi_thread_sched_idle()
    }
}
