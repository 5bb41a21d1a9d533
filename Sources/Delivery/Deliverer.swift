import CallbackPolicy
import CSystem
import Config
import Doorbell
import Foundation
import JSON
import Logging
import Store
import Synchronization
import WorkEngine

/// deliveryd's engine: claims due jobs with a lease, runs their work on N worker threads, hands the
/// callback to the dispatcher (libcurl multi, one thread, many transfers at once), and records every
/// attempt before scheduling the next. Compute workers never wait on the network or on DNS (a host name
/// is looked up by the `NameResolver`, with a deadline and a per-client bound), so slow receivers and
/// slow name servers cannot hold up other jobs. A job whose lease runs out (its daemon died) becomes due again, so nothing
/// committed is lost; at worst a callback is sent twice, with the same webhook-id both times.
public final class Deliverer: Sendable {
    public struct Options: Sendable {
        public var workers: Int
        /// Callback attempts in flight at once (the dispatcher's transfers).
        public var deliveryConcurrency: Int
        public var leaseSeconds: Double
        public var pollSeconds: Double
        public var hosts: HostGate.Options
        /// Callback host lookups: threads in total and per client, and each lookup's deadline.
        public var lookups: LookupBudget.Options
        public var lookupTimeoutSeconds: Double
        /// Finished requests older than this are deleted; nil keeps them.
        public var retentionSeconds: Double?
        /// The fraction of the size bound at which the oldest sync records are deleted; nil: never.
        public var syncPruneAt: Double?
        /// Runs first on each worker thread (deliveryd lowers their CPU priority there).
        public var onWorkerStart: @Sendable () -> Void
        public init(
            workers: Int, deliveryConcurrency: Int = 256, leaseSeconds: Double, pollSeconds: Double, hosts: HostGate.Options,
            lookups: LookupBudget.Options = .init(total: 64, perClient: 8), lookupTimeoutSeconds: Double = 2,
            retentionSeconds: Double?, syncPruneAt: Double? = nil, onWorkerStart: @escaping @Sendable () -> Void = {}
        ) {
            self.lookups = lookups
            self.lookupTimeoutSeconds = lookupTimeoutSeconds
            self.syncPruneAt = syncPruneAt
            self.onWorkerStart = onWorkerStart
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
    private let decision: AttemptDecision
    private let options: Options
    private let logger: Logger

    private let stopping = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)
    /// Signalled whenever a worker finishes a job, so the claim loop can refill it at once.
    private let slotFreed = DispatchSemaphore(value: 0)
    private let queue = Mutex<[ClaimedJob]>([])
    private let work = DispatchSemaphore(value: 0)
    private let workersDone = DispatchGroup()
    /// Keyed by the endpoint connected to (address and port), not the name in the URL.
    private let gate: Mutex<HostGate>
    private let dispatcher = CallbackDispatcher()
    private let resolver: NameResolver
    /// Jobs whose host name is being looked up: in hand, on no worker and in no transfer yet.
    private let resolving = Atomic<Int>(0)
    /// Finished attempts wait here for the recorder thread, which writes each burst in one transaction
    /// (never on the dispatcher's thread, which only moves bytes).
    private let finishedAttempts = Mutex<[Finished]>([])
    private let recorderWake = DispatchSemaphore(value: 0)
    private let recorderDone = DispatchSemaphore(value: 0)
    /// Set once the dispatcher's thread has ended: no attempt can finish after that.
    private let dispatcherStopped = Atomic<Bool>(false)

    public init(
        store: any JobStore, engine: WorkEngine, client: CallbackClient, policy: CallbackURLPolicy, signer: WebhookSigner,
        retry: RetryPolicy, options: Options, logger: Logger, lookup: @escaping NameResolver.Lookup = NameResolver.system
    ) {
        self.store = store
        self.engine = engine
        self.client = client
        self.policy = policy
        self.signer = signer
        decision = AttemptDecision(retry: retry)
        self.options = options
        self.logger = logger
        gate = Mutex(HostGate(options: options.hosts))
        resolver = NameResolver(budget: options.lookups, timeoutSeconds: options.lookupTimeoutSeconds, lookup: lookup)
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

    /// Counters published with the heartbeat.
    private let stats = Mutex(DeliveryStats())

    /// When the claim loop last went round (uptime nanoseconds).
    private let loopAt = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)

    /// How long ago the claim loop last went round: the watchdog's proof of progress.
    public var secondsSinceLoop: Double {
        Double(DispatchTime.now().uptimeNanoseconds &- loopAt.load(ordering: .relaxed)) / 1e9
    }

    /// Jobs being worked on right now: computing, looking up their callback host, or with an attempt in flight.
    public var activeWorkers: Int { active.load(ordering: .relaxed) + resolving.load(ordering: .relaxed) + dispatcher.inFlight }

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
                options.onWorkerStart()
                workerLoop()
                workersDone.leave()
            }
            thread.start()
        }
        var lastHeartbeat: UnixMillis = 0
        var lastPrune: UnixMillis = 0
        while !stopping.load(ordering: .sequentiallyConsistent) {
            loopAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
            let now = Clock.nowMillis()
            if now - lastHeartbeat >= 1000 {
                try? store.heartbeat(
                    pid: Int(getpid()), activeWorkers: activeWorkers, circuits: circuits(now: now), stats: stats.withLock { $0 }, now: now)
                lastHeartbeat = now
                pruneNearBound()
            }
            if let retention = options.retentionSeconds, now - lastPrune >= 60_000 {
                // In small batches, so the write lock is never held for long.
                let cutoff = now - UnixMillis(retention * 1000)
                while let n = try? store.prune(finishedBefore: cutoff, limit: 500), n > 0 {}
                lastPrune = now
            }
            for later in laterJobs.withLock({ l in defer { l.removeAll() }; return l }) {
                do {
                    try postpone(later.job, until: later.until, computed: later.computed, reason: later.reason)
                } catch {
                    logger.error("postpone failed", metadata: ["request_id": "\(later.job.id)", "error": "\(error)"])
                }
            }
            // An attempt that went out but is not recorded yet (the store full, say) must be written before
            // anything else is sent: its job's lease may run out meanwhile, and a claim would send it again.
            guard unrecorded.load(ordering: .sequentiallyConsistent) == 0 else {
                _ = slotFreed.wait(timeout: .now() + options.pollSeconds)
                continue
            }
            // Read under the queue's lock, where workers move a job from queued to active, so no job is counted
            // twice or not at all. Up to four jobs queued per worker, so claims come in batches (one transaction
            // for many jobs) while a queued long job still starts well within its lease.
            let free = queue.withLock { q -> Int in
                let busy = active.load(ordering: .sequentiallyConsistent) + q.count
                let held = waitingCount.load(ordering: .relaxed) + resolving.load(ordering: .relaxed)
                return min(options.workers * 4 - busy, options.deliveryConcurrency - dispatcher.inFlight - held - busy)
            }
            guard free > 0 else {
                _ = slotFreed.wait(timeout: .now() + options.pollSeconds)
                continue
            }
            var claimed: [ClaimedJob]
            let claimBegan = DispatchTime.now()
            do {
                claimed = try store.claim(limit: free, leaseMillis: Int64(options.leaseSeconds * 1000), now: now)
            } catch {
                logger.error("claim failed", metadata: ["error": "\(error)"])
                doorbell.wait(timeout: options.pollSeconds)
                continue
            }
            // A job whose callback is out or whose attempt is not recorded yet is ours still, whatever its lease
            // says (one deliveryd per database): sending it again now would be a send with no record.
            let sent = sentUnrecorded.withLock { $0 }
            if !sent.isEmpty { claimed.removeAll { sent.contains($0.id) } }
            if claimed.isEmpty {
                doorbell.wait(timeout: options.pollSeconds)
                continue
            }
            stats.withLock { s in for job in claimed { s.claimLag.observe(Double(now - job.dueAt) / 1000) } }
            queue.withLock { $0.append(contentsOf: claimed) }
            for _ in claimed { work.signal() }
            Self.pace(since: claimBegan)
        }
        // Wake every worker so it sees `stopping` once its queue is empty.
        for _ in 0..<options.workers { work.signal() }
        workersDone.wait()
        // Lookups in flight end by their deadline; what they start still needs the dispatcher.
        let lookupsEnd = DispatchTime.now() + options.lookupTimeoutSeconds + 1
        while resolving.load(ordering: .sequentiallyConsistent) > 0 && DispatchTime.now() < lookupsEnd { usleep(10_000) }
        dispatcher.stopAndWait()
        dispatcherStopped.store(true, ordering: .sequentiallyConsistent)
        recorderWake.signal()
        recorderDone.wait()
        // Jobs still held for a busy host (or postponed too late to write) are due again at once for the next
        // deliveryd, rather than after their leases. This is the only deliveryd: every lease left is ours.
        _ = try? store.releaseLeases()
        // A heartbeat from the epoch: /healthz shows deliveryd down at once, not 10 s after a clean stop.
        try? store.heartbeat(pid: Int(getpid()), activeWorkers: 0, circuits: [], stats: stats.withLock { $0 }, now: 0)
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
        var end: AttemptEnd
        /// The work, when it was too short to be saved on its own: it is written with this attempt.
        var computed: ComputedResult?
    }

    /// A job's work once it has run: what the callback reports.
    struct Work: Sendable {
        var result: JSONValue?
        var error: String?
        var durationMs: Double?
    }

    /// Work shorter than this is saved together with its first attempt (one commit, not two); longer work
    /// is saved as soon as it is done, so a crash before delivery does not throw it away.
    static let saveOnItsOwnAfterMs = 100.0

    /// Runs the work if it has not run yet, then starts one delivery attempt (recorded when it ends).
    func process(_ job: ClaimedJob) {
        var computed: ComputedResult?
        do {
            let work: Work
            switch job.work {
            case .done(let result, let error, let durationMs):
                work = Work(result: result, error: error, durationMs: durationMs)
            case .toDo(let spec):
                let started = DispatchTime.now().uptimeNanoseconds
                let outcome = engine.perform(spec, context: WorkContext(requestID: job.id, mode: .async))
                let (result, error) = (outcome.result, outcome.error)
                let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
                let done = ComputedResult(result: result, error: error, durationMs: ms, at: Clock.nowMillis())
                if ms >= Self.saveOnItsOwnAfterMs {
                    try store.saveResult(id: job.id, result: result, error: error, durationMs: ms, now: done.at)
                } else {
                    computed = done
                }
                work = Work(result: result, error: error, durationMs: ms)
            }
            try deliver(job, work: work, computed: computed)
        } catch {
            // The store failed before any callback went out: the lease will expire and the job will be tried again.
            logger.error("job failed to record", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
        }
    }

    /// Starts one attempt as `AttemptDecision` says: sends a signed POST through the dispatcher (recorded
    /// by the recorder thread when the transfer ends), holds the job while its endpoint is busy, postpones
    /// it, records the refusal at once, or hands a host name to the resolver and goes on with the next job.
    private func deliver(_ job: ClaimedJob, work: Work, computed: ComputedResult?) throws {
        let startedAt = Clock.nowMillis()
        let checked = Result { () throws(CallbackURLRefusal) in try policy.check(job.callbackURL) }
        let start = decision.start(checked: checked, admit: { endpoint in gate.withLock { $0.admit(endpoint, now: startedAt) } })
        guard case .resolve(let target) = start else {
            return try begin(start, job: job, work: work, computed: computed, startedAt: startedAt)
        }
        resolving.add(1, ordering: .sequentiallyConsistent)
        resolver.resolve(target.host, client: job.client) { [self] lookup in
            // On a lookup thread or the deadline's timer: never the database (postponing goes to the claim loop).
            defer {
                resolving.subtract(1, ordering: .sequentiallyConsistent)
                slotFreed.signal()
            }
            let now = Clock.nowMillis()
            guard job.leaseUntil > now + 1000 else { return }  // due again in the database: another claim sends it
            let next = decision.resolved(
                target, lookup: lookup, policy: policy, admit: { endpoint in gate.withLock { $0.admit(endpoint, now: now) } })
            try? begin(next, job: job, work: work, computed: computed, startedAt: startedAt, databaseAllowed: false)
        }
    }

    /// Carries out `start`. Off a worker (`databaseAllowed` false) a postponement is left to the claim loop.
    private func begin(
        _ start: AttemptDecision.Start, job: ClaimedJob, work: Work, computed: ComputedResult?, startedAt: UnixMillis,
        databaseAllowed: Bool = true
    ) throws {
        let later = { [self] (until: UnixMillis, reason: String) throws in
            if databaseAllowed {
                try postpone(job, until: until, computed: computed, reason: reason)
            } else {
                laterJobs.withLock { $0.append(Later(job: job, computed: computed, until: until, reason: reason)) }
            }
        }
        switch start {
        case .resolve:
            preconditionFailure("a name is resolved before its attempt begins")
        case .ended(let end):
            let started = DispatchTime.now().uptimeNanoseconds
            finished(Finished(job: job, attempt: job.attempts + 1, startedAt: startedAt, started: started, end: end, computed: computed))
        case .postpone(let until, let reason):
            try later(until, reason)
        case .wait(let target, let endpoint):
            let held = Waiting(job: job, work: work, computed: computed, target: target)
            let accepted = waiting.withLock { w -> Bool in
                // Bounded, so a slow endpoint's queue drains well within the jobs' leases.
                guard w[endpoint, default: []].count < options.hosts.concurrency * Self.waitingPerSlot else { return false }
                w[endpoint, default: []].append(held)
                waitingCount.add(1, ordering: .relaxed)
                return true
            }
            if !accepted {
                try later(startedAt + 250, "endpoint busy and its queue full")
            } else if !gate.withLock({ $0.isFull(endpoint) }) {
                // Its last attempt ended between the gate's answer and the append: nobody else will resume it.
                resumeWaiting(endpoint)
            }
        case .send(let target, let endpoint):
            send(Waiting(job: job, work: work, computed: computed, target: target), endpoint: endpoint)
        }
    }

    /// Jobs held per concurrency slot of a busy host, at most; beyond that they are postponed in the database.
    static let waitingPerSlot = 8

    /// A job whose callback waits for its host (at its concurrency limit) to finish an attempt.
    struct Waiting: Sendable {
        var job: ClaimedJob
        var work: Work
        var computed: ComputedResult?
        var target: CallbackTarget
    }

    /// Held jobs, by host, in arrival order. Holding them here instead of postponing each by 250 ms through
    /// the database (a write, then a claim) took deliveryd from 800-1,000 to 1,800-2,050 callbacks/s into
    /// one receiver (the drain in scripts/bench).
    private let waiting = Mutex<[String: [Waiting]]>([:])
    private let waitingCount = Atomic<Int>(0)

    private func postpone(_ job: ClaimedJob, until: UnixMillis, computed: ComputedResult?, reason: String) throws {
        if let c = computed { try store.saveResult(id: job.id, result: c.result, error: c.error, durationMs: c.durationMs, now: c.at) }
        try store.postpone(id: job.id, until: until)
        logger.debug("callback postponed", metadata: ["request_id": "\(job.id)", "until": "\(until)", "reason": "\(reason)"])
    }

    /// Sends one signed POST through the dispatcher, admitted by the endpoint's gate already.
    private func send(_ held: Waiting, endpoint: String) {
        let job = held.job
        sentUnrecorded.withLock { _ = $0.insert(job.id) }
        let startedAt = Clock.nowMillis()
        let started = DispatchTime.now().uptimeNanoseconds
        let now = Date()
        let body = CallbackPayload.body(
            id: job.id, op: job.op, result: held.work.result, error: held.work.error, durationMs: held.work.durationMs, at: now)
        let timestamp = Int(now.timeIntervalSince1970)
        let headers = [
            ("webhook-id", job.id), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signer.signature(id: job.id, timestamp: timestamp, body: body)),
        ]
        let ended: @Sendable (AttemptEnd) -> Void = { [self] end in
            gate.withLock { $0.finish(endpoint, healthy: AttemptDecision.hostHealthy(end), now: Clock.nowMillis()) }
            finished(
                Finished(job: job, attempt: job.attempts + 1, startedAt: startedAt, started: started, end: end, computed: held.computed))
            resumeWaiting(endpoint)
        }
        switch client.prepare(target: held.target, body: body, headers: headers) {
        case .success(let transfer): dispatcher.submit(transfer) { ended(.transfer($0)) }
        case .failure(let failure): ended(.transfer(AttemptResult(httpStatus: nil, error: failure.message)))
        }
    }

    /// An attempt to `endpoint` ended: the jobs held for it go, as far as its gate admits them. Runs on the
    /// dispatcher's thread, so it never touches the database: a held job whose lease ran out is let go (the
    /// database has it due again), and one whose host's circuit opened meanwhile is postponed by the claim loop.
    private func resumeWaiting(_ endpoint: String) {
        enum Next { case send(Waiting), postpone(Waiting, UnixMillis), expired }
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let now = Clock.nowMillis()
            let next = waiting.withLock { w -> Next? in
                guard let first = w[endpoint]?.first else { return nil }
                var next = Next.expired
                // A second of margin: its lease must still hold when the attempt starts.
                if first.job.leaseUntil > now + 1000 {
                    switch gate.withLock({ $0.admit(endpoint, now: now) }) {
                    case .busy: return nil
                    case .go: next = .send(first)
                    case .later(let until, _): next = .postpone(first, until)
                    }
                }
                w[endpoint]!.removeFirst()
                if w[endpoint]!.isEmpty { w[endpoint] = nil }
                waitingCount.subtract(1, ordering: .relaxed)
                return next
            }
            switch next {
            case nil: return
            case .send(let held):
                send(held, endpoint: endpoint)
                return
            case .postpone(let held, let until):
                laterJobs.withLock {
                    $0.append(Later(job: held.job, computed: held.computed, until: until, reason: "circuit opened while it waited"))
                }
                slotFreed.signal()
            case .expired:
                // Due again in the database once its lease has run out: another claim sends it.
                slotFreed.signal()
            }
        }
    }

    /// A job to postpone in the database, found where the database is not touched (the dispatcher's thread,
    /// a lookup's): held jobs whose endpoint's circuit opened while they waited, looked-up jobs whose endpoint
    /// is open or busy. The claim loop writes them.
    struct Later: Sendable {
        var job: ClaimedJob
        var computed: ComputedResult?
        var until: UnixMillis
        var reason: String
    }

    private let laterJobs = Mutex<[Later]>([])

    private func finished(_ attempt: Finished) {
        finishedAttempts.withLock { $0.append(attempt) }
        recorderWake.signal()
        // A transfer slot is free again: the claim loop may be waiting for one.
        slotFreed.signal()
    }

    /// Writes finished attempts, each burst in one transaction, until the dispatcher has stopped and
    /// nothing is left.
    /// The claim loop and the recorder each write at most once per interval: under load, jobs and attempts
    /// gather into fewer, larger transactions (each a turn at the write lock workfcgi's /async commits also
    /// wait for); when idle, the first write after a pause goes at once. The drain of 5,000 jobs went from
    /// 1,620-2,040 callbacks/s (five runs) to 2,620 and 2,650 with 5 ms (two runs; 2-3 ms: 1,600-4,060).
    static let minWriteInterval = 0.005

    /// Sleeps until `interval` seconds after `start`, if that is still ahead.
    private static func pace(since start: DispatchTime, _ interval: Double = minWriteInterval) {
        let left = Double(start.uptimeNanoseconds) / 1e9 + interval - Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        if left > 0 { usleep(UInt32(left * 1e6)) }
    }

    /// Attempts whose record failed, waiting for the recorder's next try (0 when all are written).
    private let unrecorded = Atomic<Int>(0)
    /// Jobs from the start of their callback's transfer until its attempt is recorded: a claim that returns
    /// one of them (its lease ran out meanwhile) leaves it alone.
    private let sentUnrecorded = Mutex<Set<String>>([])

    /// An attempt decided and ready to write; `createdAt` is its job's, for the commit-to-delivered histogram.
    private struct Decided {
        var write: AttemptWrite
        var createdAt: UnixMillis
    }

    /// A failed record is tried again, never dropped: the callback went out, so its record must follow, and
    /// the claim loop sends nothing new until it has (`unrecorded`). Retries back off from 50 ms to 2 s;
    /// deliveryd's headroom beyond the size bound and the sync-record pruning near it are what make room.
    private func recorderLoop() {
        var pending: [Decided] = []
        var backoff = 0.05
        var giveUpAt: DispatchTime?
        while true {
            if pending.isEmpty { recorderWake.wait() } else { _ = recorderWake.wait(timeout: .now() + backoff) }
            let batch = finishedAttempts.withLock { q in defer { q.removeAll() }; return q }
            let decided = pending + batch.map(decide)
            if !decided.isEmpty {
                let began = DispatchTime.now()
                if record(decided) {
                    sentUnrecorded.withLock { sent in for d in decided { sent.remove(d.write.id) } }
                    pending = []
                    backoff = 0.05
                } else {
                    pending = decided
                    backoff = min(backoff * 2, 2)
                }
                unrecorded.store(pending.count, ordering: .sequentiallyConsistent)
                Self.pace(since: began)
            }
            guard batch.isEmpty && dispatcherStopped.load(ordering: .sequentiallyConsistent) else { continue }
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

    private func decide(_ f: Finished) -> Decided {
        let ms = Double(DispatchTime.now().uptimeNanoseconds - f.started) / 1e6
        let outcome = decision.outcome(
            of: f.end, attemptInSeries: f.attempt - f.job.attemptBase, now: Clock.nowMillis(), random: Double.random(in: 0...1))
        var next: UnixMillis?
        if case .retry(let at) = outcome { next = at }
        let write = AttemptWrite(
            id: f.job.id,
            attempt: AttemptRecord(
                n: f.attempt, at: f.startedAt, durationMs: ms, httpStatus: f.end.httpStatus, error: f.end.error, nextAttemptAt: next),
            outcome: outcome, computed: f.computed)
        return Decided(write: write, createdAt: f.job.createdAt)
    }

    /// Writes `decided` in one transaction; false when the store refused it (nothing was written).
    private func record(_ decided: [Decided]) -> Bool {
        let writes = decided.map(\.write)
        do {
            try store.recordAttempts(writes)
        } catch {
            logger.error("attempts failed to record; trying again", metadata: ["jobs": "\(writes.count)", "error": "\(error)"])
            return false
        }
        let now = Clock.nowMillis()
        stats.withLock { s in
            for d in decided {
                s.recorded(d.write.outcome)
                if d.write.outcome == .delivered { s.commitToDelivered.observe(Double(now - d.createdAt) / 1000) }
            }
        }
        for w in writes {
            logger.info(
                "callback attempt",
                metadata: [
                    "request_id": "\(w.id)", "attempt": "\(w.attempt.n)", "status": "\(w.attempt.httpStatus.map(String.init) ?? "-")",
                    "outcome": "\(w.outcome)",
                ])
        }
        return true
    }

    /// Reads how full the store is (which also picks up a bound workfcgi changed) and, at or above
    /// `syncPruneAt`, deletes the oldest sync records (answered long ago, nothing waits for them) in small
    /// batches until 5 points under it: the store makes room by itself.
    private func pruneNearBound() {
        guard var usage = try? store.storageUsage(), let mark = options.syncPruneAt, usage.fraction >= mark else { return }
        let before = usage
        var deleted = 0
        for _ in 0..<20 {
            guard let n = try? store.pruneSyncRecords(limit: 200), n > 0 else { break }
            deleted += n
            guard let now = try? store.storageUsage() else { break }
            usage = now
            if usage.fraction < mark - 0.05 { break }
        }
        logger.notice(
            "store near its size bound: deleted the oldest sync records",
            metadata: [
                "records": "\(deleted)", "used_before": "\(before.usedBytes)", "used": "\(usage.usedBytes)",
                "reserved": "\(usage.reservedBytes)", "bound": "\(usage.boundBytes ?? 0)",
            ])
    }
}
