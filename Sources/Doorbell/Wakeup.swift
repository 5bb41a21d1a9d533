import Foundation

/// What deliveryd's claim loop sleeps on when it found nothing due: something that says "a job may be due now".
/// On SQLite the doorbell (`DoorbellListener`); on PostgreSQL a `WakeSignal` that the database's notifications
/// and the local doorbell both ring. A missed wake-up only delays a job until the next poll.
public protocol Wakeup: Sendable {
    /// Waits until woken or `timeout` seconds pass; returns whether woken. Wake-ups that came while nobody
    /// waited are not lost: the next call returns at once, and takes them all.
    @discardableResult
    func wait(timeout: Double) -> Bool
}

extension DoorbellListener: Wakeup {}

/// A wake-up rung from other threads (a listener's, a forwarded doorbell's).
public final class WakeSignal: Wakeup {
    private let rung = DispatchSemaphore(value: 0)

    public init() {}

    public func ring() { rung.signal() }

    @discardableResult
    public func wait(timeout: Double) -> Bool {
        guard rung.wait(timeout: .now() + max(0, timeout)) == .success else { return false }
        // A burst of rings wakes the claim loop once, as the doorbell's drain does.
        while rung.wait(timeout: .now()) == .success {}
        return true
    }
}

extension DoorbellListener {
    /// Rings `signal` whenever the doorbell rings, from a thread of its own, for as long as the process runs:
    /// for a claim loop that waits on more than the doorbell. Nothing else may wait on this doorbell then.
    public func forward(to signal: WakeSignal) {
        Thread { [self] in
            while true { if wait(timeout: 3600) { signal.ring() } }
        }.start()
    }
}
