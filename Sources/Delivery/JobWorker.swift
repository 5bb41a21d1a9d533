import CallbackPolicy
import Foundation
import Logging
import Store
import WorkEngine

/// What a compute worker does with a claimed job: its work (run now, or as an earlier lease left it) and its
/// callback URL checked at this moment; `DeliveryState.workDone` decides what follows.
struct JobWorker: Sendable {
    let engine: WorkEngine
    let store: any JobStore
    /// This node's id: a result is saved only while the job is still its own.
    let owner: String
    let policy: CallbackURLPolicy
    let logger: Logger

    /// Work shorter than this is saved together with its first attempt (one commit, not two); longer work
    /// is saved as soon as it is done, so a crash before delivery does not throw it away.
    static let saveOnItsOwnAfterMs = 100.0

    /// A worker thread's life: the next step until told to exit, each job's work reported to `done`.
    func loop(
        next: () -> DeliveryState.WorkerStep, done: (DeliveryState.Delivery, Result<CallbackTarget, CallbackURLRefusal>) -> Void
    ) {
        while true {
            switch next() {
            case .idle: continue
            case .exit: return
            case .compute(let job):
                let (d, checked) = run(job)
                done(d, checked)
            }
        }
    }

    func run(_ job: ClaimedJob) -> (DeliveryState.Delivery, checked: Result<CallbackTarget, CallbackURLRefusal>) {
        let d = delivery(of: job)
        return (d, Result { () throws(CallbackURLRefusal) in try policy.check(job.callbackURL) })
    }

    private func delivery(of job: ClaimedJob) -> DeliveryState.Delivery {
        let spec: JobSpec
        switch job.work {
        case .done(let work): return .init(job: job, work: work, unsaved: false)
        case .toDo(let toDo): spec = toDo
        }
        let work = compute(spec, id: job.id)
        guard work.durationMs >= Self.saveOnItsOwnAfterMs else { return .init(job: job, work: work, unsaved: true) }
        do {
            try store.saveResult(id: job.id, owner: owner, work)
            return .init(job: job, work: work, unsaved: false)
        } catch {
            logger.error("result failed to save; it goes with the attempt", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            return .init(job: job, work: work, unsaved: true)
        }
    }

    /// The handler runs so far (the runner keeps the tally), for the heartbeat.
    var handlerTally: HandlerTally { engine.handlers?.tally ?? HandlerTally() }

    /// The one place deliveryd computes a job.
    func compute(_ spec: JobSpec, id: String) -> WorkResult {
        let started = DispatchTime.now().uptimeNanoseconds
        // A built-in op or a handler program (WORKFCGI_HANDLERS_DIR), whose failure is its error document.
        let outcome = engine.perform(spec, context: WorkContext(requestID: id, mode: .async))
        let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        return WorkResult(result: outcome.result, error: outcome.error, durationMs: ms, completedAt: WallClock.nowMillis())
    }
}
