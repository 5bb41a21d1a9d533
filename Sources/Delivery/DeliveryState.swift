import CallbackPolicy
import Store

/// deliveryd's engine as pure state, in the shape of postgres-nio's `ConnectionStateMachine`: each event
/// (jobs claimed, work done, a name looked up, an attempt finished, records written, a tick, stop) updates
/// it and returns the actions to carry out (claim, resolve, send, postpone, record, release). It owns every
/// count the engine decides by, the host gate and the jobs held for busy endpoints; `Deliverer` runs the
/// threads, libcurl and the store around it and keeps it in one lock. No clock, no I/O: the caller passes
/// the time, so tests drive it event by event.
public struct DeliveryState: Sendable {
    public struct Options: Sendable {
        public var workers: Int
        /// Callback attempts in flight at once (the dispatcher's transfers).
        public var deliveryConcurrency: Int
        public var hosts: HostGate.Options
        /// Uniform in 0...1, for the retry schedule's jitter (fixed in tests).
        public var random: @Sendable () -> Double
        public init(
            workers: Int, deliveryConcurrency: Int, hosts: HostGate.Options, random: @escaping @Sendable () -> Double = { .random(in: 0...1) }
        ) {
            self.workers = workers
            self.deliveryConcurrency = deliveryConcurrency
            self.hosts = hosts
            self.random = random
        }
    }

    /// A job whose work is done, on its way to its callback.
    public struct Delivery: Sendable {
        public var job: ClaimedJob
        public var work: WorkResult
        /// Ran in this lease and not saved yet (it was short): written with its attempt or its postponement.
        public var unsaved: Bool
        public init(job: ClaimedJob, work: WorkResult, unsaved: Bool) {
            self.job = job
            self.work = work
            self.unsaved = unsaved
        }
    }

    /// One attempt to send: the shell signs and POSTs it, then reports `attemptFinished`.
    public struct Send: Sendable {
        public var delivery: Delivery
        public var target: CallbackTarget
        public var endpoint: String
        public var startedAt: UnixMillis
    }

    /// An attempt decided, to be written; `seriesStart` is when its attempt series began, for the
    /// commit-to-delivered histogram: the job's commit, or for a redelivery the moment it was queued again
    /// (the due time of its first attempt). A redelivery's later attempts have no stored start, so they
    /// are left out (nil) rather than counted from a commit that may be days old.
    public struct Record: Sendable {
        public var write: AttemptWrite
        public var seriesStart: UnixMillis?
    }

    public enum Action: Sendable {
        /// Lease up to this many due jobs, then report `claimed`.
        case claim(limit: Int)
        /// Look the callback's host name up (off the workers), then report `resolved`.
        case resolve(Delivery, CallbackTarget)
        case send(Send)
        /// Give the job back to be looked at again at `until`, without an attempt (saving unsaved work first).
        case postpone(Delivery, until: UnixMillis, reason: String)
        /// Write the attempt (the recorder batches them), then report `recorded` or `recordFailed`.
        case record(Record)
        /// Give a claimed job whose work has not started back at once.
        case release(ClaimedJob)
    }

    /// What a worker does next.
    public enum WorkerStep: Sendable {
        case compute(ClaimedJob)
        case idle
        case exit
    }

    public let options: Options
    private let decision: AttemptDecision
    /// Keyed by the endpoint connected to (address and port), not the name in the URL.
    public private(set) var gate: HostGate
    public private(set) var stats = DeliveryStats()
    public private(set) var stopping = false
    /// Claimed, waiting for a worker.
    private var queued: [ClaimedJob] = []
    private var computing = 0
    private var resolving = 0
    /// Transfers started and not finished.
    private var sending = 0
    /// Held jobs, by endpoint, in arrival order. Holding them here instead of postponing each by 250 ms through
    /// the database (a write, then a claim) took deliveryd from 800-1,000 to 1,800-2,050 callbacks/s into
    /// one receiver (the drain in scripts/bench).
    private var held: [String: [(Delivery, CallbackTarget)]] = [:]
    /// Jobs from the start of their callback's transfer until its attempt is recorded: a claim that returns
    /// one of them (its lease ran out meanwhile) leaves it alone.
    private var sentUnrecorded: Set<String> = []
    /// Attempts whose record failed and waits for the recorder's next try.
    private var unrecorded = 0
    /// The lease end of every job this node holds, from its claim until it is given back (postponed or
    /// released) or its attempt is recorded; the heartbeat renews them (`leasesRenewed`), so a job held for
    /// a busy endpoint or a long computation keeps its lease rather than being postponed as running short.
    private var leases: [String: UnixMillis] = [:]
    /// Jobs computing or being looked up when the heartbeat found them another node's: dropped when their
    /// worker or lookup reports back, with nothing sent or written.
    private var lost: Set<String> = []

    /// Jobs held per concurrency slot of a busy endpoint, at most; beyond that they are postponed in the database.
    static let heldPerSlot = 8
    /// A held or looked-up job must have this much of its lease left when its attempt starts.
    static let leaseMargin: UnixMillis = 1000

    public init(options: Options, retry: RetryPolicy, circuits: [Circuit] = []) {
        self.options = options
        decision = AttemptDecision(retry: retry)
        gate = HostGate(options: options.hosts)
        gate.restore(circuits)
    }

    /// Jobs being worked on: computing, looking up their callback host, or with an attempt in flight.
    public var inHand: Int { computing + resolving + sending }
    /// Held for a busy endpoint.
    public var heldCount: Int { held.values.reduce(0) { $0 + $1.count } }
    /// No lookup in flight (stop waits for this, up to their deadline, before the dispatcher ends).
    public var lookupsDone: Bool { resolving == 0 }
    /// The jobs whose leases the next heartbeat renews.
    public var leaseIDs: [String] { Array(leases.keys) }

    /// The job's lease end as the store last said: at its claim, or at its last renewal.
    public func leaseUntil(_ job: ClaimedJob) -> UnixMillis { max(job.leaseUntil, leases[job.id] ?? 0) }

    // MARK: Events

    /// The claim loop goes round: held jobs whose lease runs short go back to the database (a claim renews
    /// them), then as many jobs are claimed as there is room for. Nothing is claimed while an attempt that
    /// went out is not recorded: its job's lease may run out meanwhile, and a claim would send it again.
    public mutating func tick(now: UnixMillis) -> [Action] {
        var actions: [Action] = []
        let leases = self.leases
        for endpoint in held.keys {
            held[endpoint]!.removeAll { d, _ in
                guard max(d.job.leaseUntil, leases[d.job.id] ?? 0) <= now + Self.leaseMargin else { return false }
                actions.append(.postpone(d, until: now, reason: "lease running short while its endpoint was busy"))
                return true
            }
            if held[endpoint]!.isEmpty { held[endpoint] = nil }
        }
        guard !stopping && unrecorded == 0 else { return settled(actions) }
        // Up to four jobs queued per worker, so claims come in batches (one transaction for many jobs) while a
        // queued long job still starts well within its lease.
        let busy = computing + queued.count
        let free = min(options.workers * 4 - busy, options.deliveryConcurrency - sending - heldCount - resolving - busy)
        if free > 0 { actions.append(.claim(limit: free)) }
        return settled(actions)
    }

    /// Jobs leased; returns how many were queued for the workers.
    public mutating func claimed(_ jobs: [ClaimedJob], now: UnixMillis) -> Int {
        // A job whose callback is out and not recorded yet is ours still, whatever its lease says (a claim
        // returns it to this node only once its lease ran out, which renewals prevent while this node is
        // alive): sending it again now would be a send with no record.
        let fresh = jobs.filter { !sentUnrecorded.contains($0.id) }
        for job in fresh { stats.claimLag.observe(Double(now - job.dueAt) / 1000) }
        if stopping { return 0 }
        for job in fresh { leases[job.id] = job.leaseUntil }
        queued.append(contentsOf: fresh)
        return fresh.count
    }

    public mutating func nextForWorker() -> WorkerStep {
        guard !queued.isEmpty else { return stopping ? .exit : .idle }
        computing += 1
        return .compute(queued.removeFirst())
    }

    /// A worker has the job's work (run now or earlier) and its callback URL checked at this moment.
    public mutating func workDone(_ d: Delivery, checked: Result<CallbackTarget, CallbackURLRefusal>, now: UnixMillis) -> [Action] {
        computing -= 1
        if lost.remove(d.job.id) != nil { return [] }
        return settled(begin(decision.start(checked: checked, admit: { gate.admit($0, now: now) }), d, now: now))
    }

    /// The lookup `resolve` asked for has answered (or timed out).
    public mutating func resolved(
        _ d: Delivery, _ target: CallbackTarget, lookup: Result<[IPAddress], LookupFailure>, policy: CallbackURLPolicy, now: UnixMillis
    ) -> [Action] {
        resolving -= 1
        if lost.remove(d.job.id) != nil { return [] }
        guard leaseUntil(d.job) > now + Self.leaseMargin else {
            return settled([.postpone(d, until: now, reason: "lease running short after its lookup")])
        }
        return settled(begin(decision.resolved(target, lookup: lookup, policy: policy, admit: { gate.admit($0, now: now) }), d, now: now))
    }

    /// A transfer `send` started has ended: its endpoint's gate learns how, the attempt is recorded, and the
    /// endpoint's held jobs go as far as its gate now admits them (its circuit may have opened meanwhile).
    public mutating func attemptFinished(_ s: Send, _ end: AttemptEnd, durationMs: Double, now: UnixMillis) -> [Action] {
        sending -= 1
        gate.finish(s.endpoint, healthy: AttemptDecision.hostHealthy(end), now: now)
        return settled([record(s.delivery, end, at: s.startedAt, durationMs: durationMs, now: now)] + hostFreed(s.endpoint, now: now))
    }

    /// The recorder wrote these attempts.
    public mutating func recorded(_ records: [Record], now: UnixMillis) {
        unrecorded = 0
        for r in records {
            sentUnrecorded.remove(r.write.id)
            leases[r.write.id] = nil
            // Lost while its refused attempt (no send: its URL was refused) was on its way to the recorder.
            lost.remove(r.write.id)
            stats.recorded(r.write.outcome)
            if r.write.outcome == .delivered, let start = r.seriesStart { stats.commitToDelivered.observe(Double(now - start) / 1000) }
        }
    }

    /// The recorder could not write `pending` attempts; it tries again, and no claim is made meanwhile.
    public mutating func recordFailed(pending: Int) {
        unrecorded = pending
    }

    /// The heartbeat renewed `renewal.renewed` until `until`; ids this node no longer holds are ignored
    /// (given back meanwhile). A job neither renewed nor lost (its row was locked at that moment) keeps the
    /// lease end it had, and is postponed, not sent, once that runs short.
    /// `renewal.lost` are another node's now (this one was found dead, or their lease ran out, and they were
    /// claimed again): dropped wherever they are, with nothing sent and nothing written (the store would
    /// refuse the write; a postponement or release would only have undone the new owner's lease before).
    /// One whose callback is already out keeps its record, which the store refuses as well.
    public mutating func leasesRenewed(_ renewal: LeaseRenewal, until: UnixMillis) {
        for id in renewal.renewed where leases[id] != nil { leases[id] = max(leases[id]!, until) }
        for id in renewal.lost where leases.removeValue(forKey: id) != nil {
            stats.leasesLost += 1
            if sentUnrecorded.contains(id) { continue }
            let queuedBefore = queued.count
            queued.removeAll { $0.id == id }
            if queued.count < queuedBefore { continue }
            var wasHeld = false
            for endpoint in held.keys {
                let before = held[endpoint]!.count
                held[endpoint]!.removeAll { $0.0.job.id == id }
                wasHeld = wasHeld || held[endpoint]!.count < before
                if held[endpoint]!.isEmpty { held[endpoint] = nil }
            }
            // Neither queued nor held nor sent: a worker is computing it or its host is being looked up.
            if !wasHeld { lost.insert(id) }
        }
    }

    /// The rescue chore made `jobs` jobs of dead nodes due again.
    public mutating func rescued(_ jobs: Int) {
        stats.rescued += jobs
    }

    /// No new claims; queued jobs go back at once, held ones too (their work saved); jobs computing, being
    /// looked up or in flight finish with one attempt.
    public mutating func stop(now: UnixMillis) -> [Action] {
        stopping = true
        var actions = queued.map(Action.release)
        queued = []
        for (_, jobs) in held { actions += jobs.map { .postpone($0.0, until: now, reason: "deliveryd stopping") } }
        held = [:]
        return settled(actions)
    }

    // MARK: Decisions

    /// Carries out what `AttemptDecision` said about starting an attempt.
    private mutating func begin(_ start: AttemptDecision.Start, _ d: Delivery, now: UnixMillis) -> [Action] {
        switch start {
        case .resolve(let target):
            resolving += 1
            return [.resolve(d, target)]
        case .send(let target, let endpoint):
            return [send(d, target, endpoint, now: now)]
        case .postpone(let until, let reason):
            return [.postpone(d, until: until, reason: reason)]
        case .ended(let end):
            return [record(d, end, at: now, durationMs: 0, now: now)]
        case .wait(let target, let endpoint):
            if stopping { return [.postpone(d, until: now, reason: "deliveryd stopping")] }
            // Bounded, so a slow endpoint's queue drains well within the jobs' leases.
            guard held[endpoint, default: []].count < options.hosts.concurrency * Self.heldPerSlot else {
                return [.postpone(d, until: now + 250, reason: "endpoint busy and its queue full")]
            }
            held[endpoint, default: []].append((d, target))
            return []
        }
    }

    private mutating func send(_ d: Delivery, _ target: CallbackTarget, _ endpoint: String, now: UnixMillis) -> Action {
        sending += 1
        sentUnrecorded.insert(d.job.id)
        return .send(Send(delivery: d, target: target, endpoint: endpoint, startedAt: now))
    }

    /// An attempt to `endpoint` ended: its held jobs ask its gate again, in order, until one is sent or it is busy.
    private mutating func hostFreed(_ endpoint: String, now: UnixMillis) -> [Action] {
        var actions: [Action] = []
        while let (d, target) = held[endpoint]?.first {
            let start: AttemptDecision.Start
            if leaseUntil(d.job) <= now + Self.leaseMargin {
                start = .postpone(until: now, reason: "lease running short while its endpoint was busy")
            } else {
                start = decision.admitting(target, { gate.admit($0, now: now) })
                if case .wait = start { break }
            }
            held[endpoint]!.removeFirst()
            if held[endpoint]!.isEmpty { held[endpoint] = nil }
            actions += begin(start, d, now: now)
            if case .send = start { break }
        }
        return actions
    }

    /// What is given back (postponed or released) is no longer this node's to renew.
    private mutating func settled(_ actions: [Action]) -> [Action] {
        for action in actions {
            switch action {
            case .postpone(let d, _, _): leases[d.job.id] = nil
            case .release(let job): leases[job.id] = nil
            case .claim, .resolve, .send, .record: break
            }
        }
        return actions
    }

    private func record(_ d: Delivery, _ end: AttemptEnd, at: UnixMillis, durationMs: Double, now: UnixMillis) -> Action {
        let job = d.job
        let outcome = decision.outcome(of: end, attemptInSeries: job.attempts + 1 - job.attemptBase, now: now, random: options.random())
        var next: UnixMillis?
        if case .retry(let at) = outcome { next = at }
        let attempt = AttemptRecord(
            n: job.attempts + 1, at: at, durationMs: durationMs, httpStatus: end.httpStatus, error: end.error, nextAttemptAt: next)
        let seriesStart = job.attemptBase == 0 ? job.createdAt : job.attempts == job.attemptBase ? job.dueAt : nil
        return .record(
            Record(write: AttemptWrite(id: job.id, attempt: attempt, outcome: outcome, computed: d.unsaved ? d.work : nil), seriesStart: seriesStart))
    }
}
