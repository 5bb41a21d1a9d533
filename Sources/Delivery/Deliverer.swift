import CSystem
import Config
import Doorbell
import Foundation
import Logging
import Store
import Synchronization
import WorkEngine

/// deliveryd's engine: claims due jobs with a lease, runs their work on N worker threads, hands the
/// callback to the dispatcher (libcurl multi, one thread, many transfers at once), and records every
/// attempt before scheduling the next. Compute workers never wait on the network, so slow receivers cannot
/// hold up other jobs. A job whose lease runs out (its daemon died) becomes due again, so nothing
/// committed is lost; at worst a callback is sent twice, with the same webhook-id both times.
public final class Deliverer: Sendable {
    public struct Options: Sendable {
        public var workers: Int
        /// Callback attempts in flight at once (the dispatcher's transfers).
        public var deliveryConcurrency: Int
        public var leaseSeconds: Double
        public var pollSeconds: Double
        public var hosts: HostGate.Options
        /// Finished requests older than this are deleted; nil keeps them.
        public var retentionSeconds: Double?
        public init(
            workers: Int, deliveryConcurrency: Int = 256, leaseSeconds: Double, pollSeconds: Double, hosts: HostGate.Options,
            retentionSeconds: Double?
        ) {
            self.workers = workers
            self.deliveryConcurrency = deliveryConcurrency
            self.leaseSeconds = leaseSeconds
            self.pollSeconds = pollSeconds
            self.hosts = hosts
            self.retentionSeconds = retentionSeconds
        }
    }

    private let store: any JobStore
    private let engine: WorkEngine
    private let client: CallbackClient
    private let policy: CallbackURLPolicy
    private let signer: WebhookSigner
    private let retry: RetryPolicy
    private let options: Options
    private let logger: Logger

    private let stopping = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)
    /// Signalled whenever a worker finishes a job, so the claim loop can refill it at once.
    private let slotFreed = DispatchSemaphore(value: 0)
    private let queue = Mutex<[ClaimedJob]>([])
    private let work = DispatchSemaphore(value: 0)
    private let workersDone = DispatchGroup()
    private let gate: Mutex<HostGate>
    private let dispatcher = CallbackDispatcher()
    /// Finished attempts wait here for the recorder thread, which writes each burst in one transaction
    /// (never on the dispatcher's thread, which only moves bytes).
    private let finishedAttempts = Mutex<[Finished]>([])
    private let recorderWake = DispatchSemaphore(value: 0)
    private let recorderDone = DispatchSemaphore(value: 0)
    /// Set once the dispatcher's thread has ended: no attempt can finish after that.
    private let dispatcherStopped = Atomic<Bool>(false)

    public init(
        store: any JobStore, engine: WorkEngine, client: CallbackClient, policy: CallbackURLPolicy, signer: WebhookSigner,
        retry: RetryPolicy, options: Options, logger: Logger
    ) {
        self.store = store
        self.engine = engine
        self.client = client
        self.policy = policy
        self.signer = signer
        self.retry = retry
        self.options = options
        self.logger = logger
        gate = Mutex(HostGate(options: options.hosts))
    }

    /// The open and half-open circuit breakers, as JSON for the heartbeat (and so /healthz).
    func circuits(now: UnixMillis) -> JSONValue {
        .array(
            gate.withLock { $0.circuits(now: now) }.map { c in
                [
                    "host": .string(c.host), "state": .string(c.state), "consecutive_failures": .number(Double(c.failures)),
                    "retry_at": .string(Timestamp.iso8601(millis: c.until)),
                ]
            })
    }

    /// Jobs being worked on right now: computing, or with a callback attempt in flight.
    public var activeWorkers: Int { active.load(ordering: .relaxed) + dispatcher.inFlight }

    /// Asks `run` to return: no new claims; jobs in hand finish (work and one delivery attempt).
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        slotFreed.signal()
    }

    /// Runs the claim loop on the calling thread until `stop()`, then waits for the workers.
    public func run(doorbell: DoorbellListener) {
        dispatcher.start()
        let recorder = Thread { [self] in
            workfcgi_name_thread("recorder")
            recorderLoop()
            recorderDone.signal()
        }
        recorder.start()
        for i in 0..<options.workers {
            workersDone.enter()
            let thread = Thread { [self] in
                workfcgi_name_thread("worker-\(i)")
                Priority.makeCurrentThreadCompute()
                workerLoop()
                workersDone.leave()
            }
            thread.start()
        }
        var lastHeartbeat: UnixMillis = 0
        var lastPrune: UnixMillis = 0
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let now = Clock.nowMillis()
            if now - lastHeartbeat >= 1000 {
                try? store.heartbeat(pid: Int(getpid()), activeWorkers: activeWorkers, circuits: circuits(now: now), now: now)
                lastHeartbeat = now
            }
            if let retention = options.retentionSeconds, now - lastPrune >= 60_000 {
                // In small batches, so the write lock is never held for long.
                let cutoff = now - UnixMillis(retention * 1000)
                while let n = try? store.prune(finishedBefore: cutoff, limit: 500), n > 0 {}
                lastPrune = now
            }
            // Read under the queue's lock, where workers move a job from queued to active, so no job is counted
            // twice or not at all. Up to four jobs queued per worker, so claims come in batches (one transaction
            // for many jobs) while a queued long job still starts well within its lease.
            let free = queue.withLock { q -> Int in
                let busy = active.load(ordering: .sequentiallyConsistent) + q.count
                return min(options.workers * 4 - busy, options.deliveryConcurrency - dispatcher.inFlight - busy)
            }
            guard free > 0 else {
                _ = slotFreed.wait(timeout: .now() + options.pollSeconds)
                continue
            }
            let claimed: [ClaimedJob]
            do {
                claimed = try store.claim(limit: free, leaseMillis: Int64(options.leaseSeconds * 1000), now: now)
            } catch {
                logger.error("claim failed", metadata: ["error": "\(error)"])
                doorbell.wait(timeout: options.pollSeconds)
                continue
            }
            if claimed.isEmpty {
                doorbell.wait(timeout: options.pollSeconds)
                continue
            }
            queue.withLock { $0.append(contentsOf: claimed) }
            for _ in claimed { work.signal() }
        }
        // Wake every worker so it sees `stopping` once its queue is empty.
        for _ in 0..<options.workers { work.signal() }
        workersDone.wait()
        dispatcher.stopAndWait()
        dispatcherStopped.store(true, ordering: .sequentiallyConsistent)
        recorderWake.signal()
        recorderDone.wait()
        // A heartbeat from the epoch: /healthz shows deliveryd down at once, not 10 s after a clean stop.
        try? store.heartbeat(pid: Int(getpid()), activeWorkers: 0, circuits: [], now: 0)
    }

    private func workerLoop() {
        while true {
            work.wait()
            let next = queue.withLock { q -> ClaimedJob? in
                guard !q.isEmpty else { return nil }
                active.add(1, ordering: .sequentiallyConsistent)
                return q.removeFirst()
            }
            guard let job = next else {
                if stopping.load(ordering: .sequentiallyConsistent) { return }
                continue
            }
            if stopping.load(ordering: .sequentiallyConsistent) {
                // Claimed but not started: hand it back rather than make the stop wait for its work.
                try? store.release(id: job.id)
                active.subtract(1, ordering: .sequentiallyConsistent)
                continue
            }
            process(job)
            active.subtract(1, ordering: .sequentiallyConsistent)
            slotFreed.signal()
        }
    }

    /// One attempt that ended, waiting to be recorded.
    struct Finished: Sendable {
        var job: ClaimedJob
        var attempt: Int
        var startedAt: UnixMillis
        var started: UInt64
        var result: AttemptResult
        /// The work, when it was too short to be saved on its own: it is written with this attempt.
        var computed: ComputedResult?
    }

    /// Work shorter than this is saved together with its first attempt (one commit, not two); longer work
    /// is saved as soon as it is done, so a crash before delivery does not throw it away.
    static let saveOnItsOwnAfterMs = 100.0

    /// Runs the work if it has not run yet, then starts one delivery attempt (recorded when it ends).
    func process(_ claimed: ClaimedJob) {
        var job = claimed
        var computed: ComputedResult?
        do {
            if job.result == nil && job.error == nil {
                let started = DispatchTime.now().uptimeNanoseconds
                var result: JSONValue?
                var failure: String?
                do {
                    let request = try RequestParser.parse(job.input, mode: .async)
                    result = engine.run(request.spec)
                } catch {
                    failure = "stored input no longer valid: \(error.message)"
                }
                let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
                let done = ComputedResult(result: result, error: failure, durationMs: ms, at: Clock.nowMillis())
                if ms >= Self.saveOnItsOwnAfterMs {
                    try store.saveResult(id: job.id, result: result, error: failure, durationMs: ms, now: done.at)
                } else {
                    computed = done
                }
                job.result = result
                job.error = failure
                job.durationMs = ms
            }
            try deliver(job, computed: computed)
        } catch {
            // The store failed; the lease will expire and the job will be tried again.
            logger.error("job failed to record", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
        }
    }

    /// Checks the URL and the host's gate, then hands a signed POST to the dispatcher; the attempt is
    /// recorded by the recorder thread when the transfer ends. A refused URL is recorded at once.
    private func deliver(_ job: ClaimedJob, computed: ComputedResult?) throws {
        let attempt = job.attempts + 1
        let startedAt = Clock.nowMillis()
        let started = DispatchTime.now().uptimeNanoseconds
        let target: CallbackTarget
        do {
            // Checked again at every attempt: DNS may have changed since the job was accepted.
            target = try policy.vet(job.callbackURL)
        } catch {
            finished(Finished(
                job: job, attempt: attempt, startedAt: startedAt, started: started,
                result: AttemptResult(httpStatus: nil, error: "callback URL refused: \(error.message)"), computed: computed))
            return
        }
        let host = "\(target.host):\(target.port)"
        if case .later(let until, let reason) = gate.withLock({ $0.admit(host, now: startedAt) }) {
            if let c = computed { try store.saveResult(id: job.id, result: c.result, error: c.error, durationMs: c.durationMs, now: c.at) }
            try store.postpone(id: job.id, until: until)
            logger.debug("callback postponed", metadata: ["request_id": "\(job.id)", "host": "\(host)", "reason": "\(reason)"])
            return
        }
        let now = Date()
        let body = CallbackPayload.body(id: job.id, op: job.op, result: job.result, error: job.error, durationMs: job.durationMs, at: now)
        let timestamp = Int(now.timeIntervalSince1970)
        let headers = [
            ("webhook-id", job.id), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signer.signature(id: job.id, timestamp: timestamp, body: body)),
        ]
        let finish: @Sendable (AttemptResult) -> Void = { [self] result in
            let healthy = result.httpStatus.map { !(500...599).contains($0) && $0 != 429 } ?? false
            gate.withLock { $0.finish(host, healthy: healthy, now: Clock.nowMillis()) }
            finished(Finished(job: job, attempt: attempt, startedAt: startedAt, started: started, result: result, computed: computed))
        }
        switch client.prepare(target: target, body: body, headers: headers) {
        case .success(let transfer): dispatcher.submit(transfer, completion: finish)
        case .failure(let failure): finish(AttemptResult(httpStatus: nil, error: failure.message))
        }
    }

    private func finished(_ attempt: Finished) {
        finishedAttempts.withLock { $0.append(attempt) }
        recorderWake.signal()
        // A transfer slot is free again: the claim loop may be waiting for one.
        slotFreed.signal()
    }

    /// Writes finished attempts, each burst in one transaction, until the dispatcher has stopped and
    /// nothing is left.
    private func recorderLoop() {
        while true {
            recorderWake.wait()
            let batch = finishedAttempts.withLock { q in defer { q.removeAll() }; return q }
            if !batch.isEmpty { record(batch) }
            if batch.isEmpty && dispatcherStopped.load(ordering: .sequentiallyConsistent) { return }
        }
    }

    private func record(_ batch: [Finished]) {
        var writes: [AttemptWrite] = []
        for f in batch {
            let ms = Double(DispatchTime.now().uptimeNanoseconds - f.started) / 1e6
            // A redelivery starts a fresh series: the schedule counts from its first attempt.
            var decision = retry.decide(attempt: f.attempt - f.job.attemptBase, result: f.result, random: Double.random(in: 0...1))
            if f.result.error?.hasPrefix("callback URL refused") == true, case .retry = decision {
                // A refused URL will not become acceptable by waiting.
                decision = .giveUp(reason: f.result.error ?? "callback URL refused")
            }
            let outcome: AttemptOutcome
            var next: UnixMillis?
            switch decision {
            case .delivered: outcome = .delivered
            case .retry(let seconds):
                let at = Clock.nowMillis() + UnixMillis(seconds * 1000)
                next = at
                outcome = .retry(at: at)
            case .giveUp(let reason): outcome = .giveUp(reason: reason)
            }
            writes.append(AttemptWrite(
                id: f.job.id,
                attempt: AttemptRecord(
                    n: f.attempt, at: f.startedAt, durationMs: ms, httpStatus: f.result.httpStatus, error: f.result.error,
                    nextAttemptAt: next),
                outcome: outcome, computed: f.computed))
        }
        do {
            try store.recordAttempts(writes)
        } catch {
            // Not recorded: the leases will expire and the jobs will be tried again (at least once).
            logger.error("attempts failed to record", metadata: ["jobs": "\(writes.count)", "error": "\(error)"])
            return
        }
        for w in writes {
            logger.info(
                "callback attempt",
                metadata: [
                    "request_id": "\(w.id)", "attempt": "\(w.attempt.n)", "status": "\(w.attempt.httpStatus.map(String.init) ?? "-")",
                    "outcome": "\(w.outcome)",
                ])
        }
    }
}
