import CallbackPolicy
import CSystem
import Doorbell
import Foundation
import JSON
import Logging
import Store
import Synchronization
import WorkEngine

/// deliveryd's engine: claims due jobs with a lease, runs their work on N worker threads, hands the
/// callback to the dispatcher (libcurl multi, one thread, many transfers at once), and records every
/// attempt before scheduling the next. Every decision is `DeliveryState`'s; this is the shell that carries
/// them out: the threads, libcurl, the resolver and the store. Compute workers never wait on the network or
/// on DNS, so slow receivers and slow name servers cannot hold up other jobs. A job whose lease runs out (its
/// daemon died) becomes due again, so nothing committed is lost; at worst a callback is sent twice, with the
/// same webhook-id both times.
public final class Deliverer: Sendable {
    private let store: any JobStore
    private let engine: WorkEngine
    private let client: CallbackClient
    private let policy: CallbackURLPolicy
    private let signer: WebhookSigner
    private let options: Options
    private let logger: Logger
    private let state: Mutex<DeliveryState>
    private let dispatcher = CallbackDispatcher()
    private let resolver: NameResolver
    private let recorder: Recorder
    /// Wakes the claim loop after every event (room may have come free); `work` wakes a worker per queued job.
    private let slotFreed = DispatchSemaphore(value: 0)
    private let work = DispatchSemaphore(value: 0)
    private let workersDone = DispatchGroup()
    /// When the claim loop last went round (uptime nanoseconds).
    private let loopAt = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)

    /// Work shorter than this is saved together with its first attempt (one commit, not two); longer work
    /// is saved as soon as it is done, so a crash before delivery does not throw it away.
    static let saveOnItsOwnAfterMs = 100.0

    /// The circuits of the last heartbeat are taken back: a restart does not forget a dead receiver.
    public init(
        store: any JobStore, engine: WorkEngine, client: CallbackClient, policy: CallbackURLPolicy, signer: WebhookSigner,
        retry: RetryPolicy, options: Options, logger: Logger, lookup: @escaping NameResolver.Lookup = NameResolver.system
    ) {
        (self.store, self.engine, self.client, self.policy, self.signer) = (store, engine, client, policy, signer)
        (self.options, self.logger) = (options, logger)
        let circuits = (try? store.daemonStatus())?.circuits ?? []
        state = Mutex(
            DeliveryState(
                options: .init(workers: options.workers, deliveryConcurrency: options.deliveryConcurrency, hosts: options.hosts),
                retry: retry, circuits: circuits))
        recorder = Recorder(store: store, logger: logger)
        resolver = NameResolver(budget: options.lookups, timeoutSeconds: options.lookupTimeoutSeconds, lookup: lookup)
    }

    /// How long ago the claim loop last went round: the watchdog's proof of progress.
    public var secondsSinceLoop: Double { Double(DispatchTime.now().uptimeNanoseconds &- loopAt.load(ordering: .relaxed)) / 1e9 }

    /// Jobs being worked on right now: computing, looking up their callback host, or with an attempt in flight.
    public var activeWorkers: Int { state.withLock { $0.inHand } }

    /// Asks `run` to return: no new claims; jobs in hand finish (work and one delivery attempt).
    public func stop() { handle { $0.stop(now: Clock.nowMillis()) } }

    /// Runs the claim loop on the calling thread until `stop()`, then waits for the jobs in hand.
    public func run(doorbell: DoorbellListener) {
        dispatcher.start()
        recorder.start(
            recorded: { [self] records in handle { $0.recorded(records, now: Clock.nowMillis()); return [] } },
            failed: { [self] pending in state.withLock { $0.recordFailed(pending: pending) } })
        for i in 0..<options.workers {
            workersDone.enter()
            Thread { [self] in
                workfcgi_name_thread("worker-\(i)")
                options.onWorkerStart()
                workerLoop()
                workersDone.leave()
            }.start()
        }
        var chores = Housekeeping(store: store, retentionSeconds: options.retentionSeconds, syncPruneAt: options.syncPruneAt, logger: logger)
        while !state.withLock({ $0.stopping }) {
            loopAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
            let now = Clock.nowMillis()
            chores.run(now: now) { state.withLock { ($0.inHand, $0.gate.circuits(now: now), $0.stats) } }
            var limit = 0
            for action in state.withLock({ $0.tick(now: now) }) {
                if case .claim(let n) = action { limit = n } else { perform(action) }
            }
            guard limit > 0 else {
                _ = slotFreed.wait(timeout: .now() + options.pollSeconds)
                continue
            }
            let began = DispatchTime.now()
            do {
                let jobs = try store.claim(limit: limit, leaseMillis: Int64(options.leaseSeconds * 1000), now: now)
                let queued = state.withLock { $0.claimed(jobs, now: now) }
                guard queued > 0 else {
                    doorbell.wait(timeout: options.pollSeconds)
                    continue
                }
                for _ in 0..<queued { work.signal() }
            } catch {
                logger.error("claim failed", metadata: ["error": "\(error)"])
                doorbell.wait(timeout: options.pollSeconds)
                continue
            }
            Recorder.pace(since: began)
        }
        // Every worker sees `.exit` once the queue is empty; lookups in flight end by their deadline, and what
        // they start still needs the dispatcher; what the dispatcher finishes still needs the recorder.
        for _ in 0..<options.workers { work.signal() }
        workersDone.wait()
        let lookupsEnd = DispatchTime.now() + options.lookupTimeoutSeconds + 1
        while !state.withLock({ $0.lookupsDone }) && DispatchTime.now() < lookupsEnd { usleep(10_000) }
        dispatcher.stopAndWait()
        recorder.closeAndWait()
        // Jobs postponed too late to write are due again at once for the next deliveryd, rather than after their
        // leases. This is the only deliveryd: every lease left is ours.
        _ = try? store.releaseLeases()
        // A heartbeat from the epoch: /healthz shows deliveryd down at once; its circuits wait for the next start.
        let (circuits, stats) = state.withLock { ($0.gate.circuits(now: Clock.nowMillis()), $0.stats) }
        try? store.heartbeat(pid: Int(getpid()), activeWorkers: 0, circuits: circuits, stats: stats, now: 0)
    }

    /// Runs one event on the state, carries out what it returns, and wakes the claim loop.
    private func handle(_ event: (inout DeliveryState) -> [DeliveryState.Action]) {
        for action in state.withLock({ event(&$0) }) { perform(action) }
        slotFreed.signal()
    }

    private func perform(_ action: DeliveryState.Action) {
        switch action {
        case .claim: preconditionFailure("claims are the claim loop's")
        case .resolve(let d, let target):
            resolver.resolve(target.host, client: d.job.client) { [self] lookup in
                handle { $0.resolved(d, target, lookup: lookup, policy: policy, now: Clock.nowMillis()) }
            }
        case .send(let s): send(s)
        case .postpone, .record, .release: recorder.submit(action)
        }
    }

    private func workerLoop() {
        while true {
            work.wait()
            switch state.withLock({ $0.nextForWorker() }) {
            case .idle: continue
            case .exit: return
            case .compute(let job):
                let d = delivery(of: job)
                let checked = Result { () throws(CallbackURLRefusal) in try policy.check(job.callbackURL) }
                handle { $0.workDone(d, checked: checked, now: Clock.nowMillis()) }
            }
        }
    }

    /// The job's work: run now, or as an earlier lease left it.
    private func delivery(of job: ClaimedJob) -> DeliveryState.Delivery {
        let spec: JobSpec
        switch job.work {
        case .done(let work): return .init(job: job, work: work, unsaved: false)
        case .toDo(let toDo): spec = toDo
        }
        let work = compute(spec, id: job.id)
        guard work.durationMs >= Self.saveOnItsOwnAfterMs else { return .init(job: job, work: work, unsaved: true) }
        do {
            try store.saveResult(id: job.id, work)
            return .init(job: job, work: work, unsaved: false)
        } catch {
            logger.error("result failed to save; it goes with the attempt", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            return .init(job: job, work: work, unsaved: true)
        }
    }

    /// The one place deliveryd computes a job.
    private func compute(_ spec: JobSpec, id: String) -> WorkResult {
        let started = DispatchTime.now().uptimeNanoseconds
        // A built-in op or a handler program (WORKFCGI_HANDLERS_DIR), whose failure is its error document.
        let outcome = engine.perform(spec, context: WorkContext(requestID: id, mode: .async))
        let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        return WorkResult(result: outcome.result, error: outcome.error, durationMs: ms, completedAt: Clock.nowMillis())
    }

    /// Signs and POSTs one callback through the dispatcher; its end goes back to the state.
    private func send(_ s: DeliveryState.Send) {
        let job = s.delivery.job
        let started = DispatchTime.now().uptimeNanoseconds
        let now = Date()
        let body = CallbackPayload.body(id: job.id, op: job.op, work: s.delivery.work, at: now)
        let timestamp = Int(now.timeIntervalSince1970)
        let headers = [
            ("webhook-id", job.id), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signer.signature(id: job.id, timestamp: timestamp, body: body)),
        ]
        let ended: @Sendable (AttemptResult) -> Void = { [self] result in
            let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
            handle { $0.attemptFinished(s, .transfer(result), durationMs: ms, now: Clock.nowMillis()) }
        }
        switch client.prepare(target: s.target, body: body, headers: headers) {
        case .success(let transfer): dispatcher.submit(transfer, completion: ended)
        case .failure(let failure): ended(AttemptResult(httpStatus: nil, error: failure.message))
        }
    }
}
