import Synchronization

/// A value computed at most once per `maxAge` (uptime nanoseconds) and shared by every thread meanwhile.
/// The caller passes the time, so the rule is testable: a thread that read the clock, then lost the CPU
/// while another stored a newer value, sees `now` earlier than `takenAt` and must take that as fresh.
/// (`now - takenAt` trapped on exactly that underflow and took workfcgi down under a /healthz storm.)
final class Recent<Value: Sendable>: Sendable {
    private let state = Mutex<(takenAt: UInt64, value: Value?)>((0, nil))
    let maxAge: UInt64

    init(maxAge: UInt64) { self.maxAge = maxAge }

    /// The kept value if it is younger than `maxAge` at `now`, else `compute()`'s, kept from `now` on.
    func value(now: UInt64, compute: () -> Value) -> Value {
        if let kept = state.withLock({ s in s.value.flatMap { now < s.takenAt &+ maxAge ? $0 : nil } }) { return kept }
        let fresh = compute()
        state.withLock { $0 = (now, fresh) }
        return fresh
    }

    /// Forgets the kept value: the next caller computes.
    func invalidate() { state.withLock { $0.value = nil } }
}
