import CSystem
import Foundation
import Logging
import Store
import Synchronization

/// The thread that writes what the engine decided: attempts (each burst in one transaction), postponements
/// and releases. Never the dispatcher's thread or a lookup's, which only move bytes and wait.
/// A failed attempt record is tried again, never dropped: the callback went out, so its record must follow,
/// and `DeliveryState` claims nothing new until it has. Retries back off from 50 ms to 2 s; deliveryd's
/// headroom beyond the size bound and the sync-record pruning near it are what make room.
final class Recorder: Sendable {
    private let store: any JobStore
    /// This node's id, the owner its writes are conditional on.
    private let owner: String
    private let logger: Logger
    private let inbox = Mutex<[DeliveryState.Action]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let closed = Atomic<Bool>(false)

    init(store: any JobStore, owner: String, logger: Logger) {
        self.store = store
        self.owner = owner
        self.logger = logger
    }

    /// The claim loop and the recorder each write at most once per interval: under load, jobs and attempts
    /// gather into fewer, larger transactions (each a turn at the write lock workfcgi's /async commits also
    /// wait for); when idle, the first write after a pause goes at once. The drain of 5,000 jobs went from
    /// 1,620-2,040 callbacks/s (five runs) to 2,620 and 2,650 with 5 ms (two runs; 2-3 ms: 1,600-4,060).
    static let minWriteInterval = 0.005

    /// Sleeps until `interval` seconds after `start`, if that is still ahead.
    static func pace(since start: DispatchTime, _ interval: Double = minWriteInterval) {
        let left = Double(start.uptimeNanoseconds) / 1e9 + interval - Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        if left > 0 { usleep(UInt32(left * 1e6)) }
    }

    /// `recorded` gets each burst written; `failed`, how many attempts wait for the next try.
    func start(recorded: @escaping @Sendable ([DeliveryState.Record]) -> Void, failed: @escaping @Sendable (Int) -> Void) {
        Thread { [self] in
            workfcgi_name_thread("recorder")
            loop(recorded: recorded, failed: failed)
            done.signal()
        }.start()
    }

    /// Queues a `.record`, `.postpone` or `.release`.
    func submit(_ action: DeliveryState.Action) {
        inbox.withLock { $0.append(action) }
        wake.signal()
    }

    /// Writes what is queued, then ends; attempts still unrecorded get a few more seconds of tries.
    func closeAndWait() {
        closed.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
        done.wait()
    }

    private func loop(recorded: ([DeliveryState.Record]) -> Void, failed: (Int) -> Void) {
        var pending: [DeliveryState.Record] = []
        var backoff = 0.05
        var giveUpAt: DispatchTime?
        while true {
            if pending.isEmpty { wake.wait() } else { _ = wake.wait(timeout: .now() + backoff) }
            let batch = inbox.withLock { q in defer { q.removeAll() }; return q }
            var records = pending
            for action in batch {
                switch action {
                case .record(let r): records.append(r)
                case .postpone(let d, let until, let reason): postpone(d, until: until, reason: reason)
                case .release(let job): try? store.release(id: job.id, owner: owner)
                case .claim, .resolve, .send: preconditionFailure("not a write")
                }
            }
            if !records.isEmpty {
                let began = DispatchTime.now()
                if write(records) {
                    recorded(records)
                    pending = []
                    backoff = 0.05
                } else {
                    pending = records
                    backoff = min(backoff * 2, 2)
                    failed(pending.count)
                }
                Self.pace(since: began)
            }
            guard batch.isEmpty && closed.load(ordering: .sequentiallyConsistent) else { continue }
            if pending.isEmpty { return }
            // Stopping: a few more seconds of tries, then what is left is sent again after its lease.
            let deadline = giveUpAt ?? .now() + 5
            giveUpAt = deadline
            if DispatchTime.now() >= deadline {
                logger.error("stopping with attempts not recorded; their jobs will be sent again", metadata: ["jobs": "\(pending.count)"])
                return
            }
        }
    }

    private func postpone(_ d: DeliveryState.Delivery, until: UnixMillis, reason: String) {
        do {
            if d.unsaved { try store.saveResult(id: d.job.id, owner: owner, d.work) }
            try store.postpone(id: d.job.id, owner: owner, until: until)
            logger.debug("callback postponed", metadata: ["request_id": "\(d.job.id)", "until": "\(Timestamp.iso8601(millis: until))", "reason": "\(reason)"])
        } catch {
            // Its lease runs out instead, and the job is due again then.
            logger.error("postpone failed", metadata: ["request_id": "\(d.job.id)", "error": "\(error)"])
        }
    }

    /// Writes `records` in one transaction; false when the store refused it (nothing was written).
    private func write(_ records: [DeliveryState.Record]) -> Bool {
        do {
            try store.recordAttempts(records.map(\.write), owner: owner)
        } catch {
            logger.error("attempts failed to record; trying again", metadata: ["jobs": "\(records.count)", "error": "\(error)"])
            return false
        }
        for w in records.map(\.write) {
            let (level, metadata) = Self.logEntry(w)
            logger.log(level: level, "callback attempt", metadata: metadata)
        }
        return true
    }

    /// One attempt's log line: a delivery at info, a retry at warning, giving up at error (an operator's
    /// alert), with the HTTP status when one came, the failure's reason and times as ISO 8601, never epoch ms.
    static func logEntry(_ w: AttemptWrite) -> (Logger.Level, Logger.Metadata) {
        var metadata: Logger.Metadata = [
            "request_id": "\(w.id)", "attempt": "\(w.attempt.n)", "outcome": "\(w.outcome.kind.rawValue)",
            "duration_ms": "\((w.attempt.durationMs * 10).rounded() / 10)",
        ]
        if let status = w.attempt.httpStatus { metadata["http_status"] = "\(status)" }
        if let error = w.attempt.error { metadata["error"] = "\(error)" }
        switch w.outcome {
        case .delivered:
            return (.info, metadata)
        case .retry(let at):
            metadata["retry_at"] = "\(Timestamp.iso8601(millis: at))"
            return (.warning, metadata)
        case .giveUp(let reason):
            metadata["reason"] = "\(reason)"
            return (.error, metadata)
        }
    }
}
