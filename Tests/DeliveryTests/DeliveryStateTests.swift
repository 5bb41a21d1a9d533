import CallbackPolicy
import MemoryStore
import Store
import Testing
import WorkEngine

@testable import Delivery

/// Drives `DeliveryState` event by event against a `MemoryStore`, carrying out its writes the way the
/// shell's recorder does, with no thread, socket or clock.
@Suite struct DeliveryStateTests {
    let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [80...80])
    let store = MemoryStore()
    let now: UnixMillis = 1_000_000
    var state = DeliveryState(
        options: .init(workers: 1, deliveryConcurrency: 16, hosts: .init(concurrency: 1, threshold: 2, cooldownMillis: 5_000), random: { 0.5 }),
        retry: RetryPolicy(schedule: [1, 2], jitter: 0))

    func enqueue(_ n: Int, url: String = "http://93.184.216.34/hook") throws -> [String] {
        try (0..<n).map { i in
            let id = RequestID.make(now: now + UnixMillis(i))
            _ = try store.enqueue(
                NewJob(id: id, spec: .hash(input: "x", iterations: 1), input: [:], callbackURL: url, idempotencyKey: nil, createdAt: now),
                backlogLimit: 100, clientLimit: 100, clientStorageLimit: 1 << 30)
            return id
        }
    }

    /// Carries out the writes as the recorder would; returns the sends.
    mutating func apply(_ actions: [DeliveryState.Action], at t: UnixMillis) throws -> [DeliveryState.Send] {
        var sends: [DeliveryState.Send] = []
        var records: [DeliveryState.Record] = []
        for action in actions {
            switch action {
            case .send(let s): sends.append(s)
            case .record(let r): records.append(r)
            case .postpone(let d, let until, _):
                if d.unsaved { try store.saveResult(id: d.job.id, d.work) }
                try store.postpone(id: d.job.id, until: until)
            case .release(let job): try store.release(id: job.id)
            case .claim, .resolve: Issue.record("unexpected \(action)")
            }
        }
        try store.recordAttempts(records.map(\.write))
        state.recorded(records, now: t)
        return sends
    }

    /// Claims what `tick` asks for and runs every queued job's (instant) work to its first step.
    mutating func claimAndWork(at t: UnixMillis) throws -> [DeliveryState.Send] {
        var sends: [DeliveryState.Send] = []
        for case .claim(let limit) in state.tick(now: t) {
            _ = state.claimed(try store.claim(limit: limit, leaseMillis: 30_000, now: t), now: t)
        }
        while case .compute(let job) = state.nextForWorker() {
            let d = DeliveryState.Delivery(job: job, work: WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: t), unsaved: true)
            let checked = Result { () throws(CallbackURLRefusal) in try policy.check(job.callbackURL) }
            sends += try apply(state.workDone(d, checked: checked, now: t), at: t)
        }
        return sends
    }

    @Test mutating func aBusyHostHoldsJobsAndSendsTheNextWhenOneEnds() throws {
        let ids = try enqueue(3)
        let sends = try claimAndWork(at: now)
        #expect(sends.map(\.delivery.job.id) == [ids[0]], "one slot per host: the others are held")
        #expect(state.heldCount == 2 && state.inHand == 1)
        let next = try apply(state.attemptFinished(sends[0], .transfer(.init(httpStatus: 200, error: nil)), durationMs: 3, now: now + 10), at: now + 10)
        #expect(next.map(\.delivery.job.id) == [ids[1]] && state.heldCount == 1)
        #expect(store.row(ids[0])?.status == .completed && store.row(ids[0])?.work?.result == ["ok": true], "the unsaved work went with its attempt")
    }

    /// commit_to_callback_seconds: a redelivery an hour later counts from the redelivery, not the commit.
    @Test mutating func aRedeliveryIsTimedFromItsRequeueNotTheCommit() throws {
        let id = try enqueue(1)[0]
        let ok = AttemptEnd.transfer(.init(httpStatus: 200, error: nil))
        var sends = try claimAndWork(at: now)
        _ = try apply(state.attemptFinished(sends[0], ok, durationMs: 3, now: now + 100), at: now + 100)
        #expect(state.stats.commitToDelivered.count == 1 && abs(state.stats.commitToDelivered.sum - 0.1) < 1e-9)

        let later = now + 3_600_000
        #expect(try store.redeliver(id: id, now: later) == .requeued)
        sends = try claimAndWork(at: later + 50)
        #expect(sends.map(\.delivery.job.id) == [id])
        _ = try apply(state.attemptFinished(sends[0], ok, durationMs: 3, now: later + 250), at: later + 250)
        #expect(state.stats.commitToDelivered.count == 2)
        #expect(abs(state.stats.commitToDelivered.sum - 0.35) < 1e-9, "0.1 s, then 0.25 s from the redelivery: \(state.stats.commitToDelivered.sum)")
    }

    @Test mutating func anOpenCircuitPostponesTheHeldJobsWithoutAnAttempt() throws {
        let ids = try enqueue(3)
        var sends = try claimAndWork(at: now)
        let fail = AttemptEnd.transfer(.init(httpStatus: 500, error: nil))
        sends = try apply(state.attemptFinished(sends[0], fail, durationMs: 1, now: now + 1), at: now + 1)
        #expect(sends.map(\.delivery.job.id) == [ids[1]])
        // The second failure trips the breaker: the third job is postponed to the end of the cooldown, not sent.
        sends = try apply(state.attemptFinished(sends[0], fail, durationMs: 1, now: now + 2), at: now + 2)
        #expect(sends.isEmpty && state.heldCount == 0)
        #expect(store.row(ids[2])?.nextAttemptAt == now + 2 + 5_000 && store.row(ids[2])?.attempts == 0)
        #expect(state.gate.circuits(now: now + 3).map(\.state) == [.open])
        #expect(store.row(ids[0])?.nextAttemptAt == now + 1 + 1_000, "retried on the schedule")
    }

    @Test mutating func aHeldJobWhoseLeaseRunsShortGoesBackWithItsWork() throws {
        let ids = try enqueue(2)
        _ = try claimAndWork(at: now)
        #expect(state.heldCount == 1)
        _ = try apply(state.tick(now: now + 29_500).filter { if case .claim = $0 { false } else { true } }, at: now + 29_500)
        #expect(state.heldCount == 0)
        #expect(store.row(ids[1])?.leaseUntil == 0 && store.row(ids[1])?.work != nil, "due again at once, its work saved")
    }

    /// A heartbeat's renewal reaches the held job: the tick that would have postponed it as running short
    /// (as above) keeps it, and the job goes out when its endpoint frees, 50 s after its claim.
    @Test mutating func aRenewedLeaseKeepsAHeldJob() throws {
        let ids = try enqueue(2)
        let sends = try claimAndWork(at: now)
        #expect(state.heldCount == 1 && Set(state.leaseIDs) == Set(ids), "both jobs' leases are the heartbeat's to renew")
        state.leasesRenewed(LeaseRenewal(renewed: ids + ["not-ours"]), until: now + 29_000 + 30_000)
        #expect(!state.leaseIDs.contains("not-ours"), "a job this node does not hold is not taken up")
        let tick = state.tick(now: now + 29_500).filter { if case .claim = $0 { false } else { true } }
        #expect(tick.isEmpty && state.heldCount == 1, "not postponed: renewed")
        let next = try apply(state.attemptFinished(sends[0], .transfer(.init(httpStatus: 200, error: nil)), durationMs: 3, now: now + 50_000), at: now + 50_000)
        #expect(next.map(\.delivery.job.id) == [ids[1]], "sent on the renewed lease")
        #expect(state.leaseIDs == [ids[1]], "a recorded job is no longer renewed")
        #expect(state.leaseUntil(next[0].delivery.job) == now + 59_000)
    }

    /// A lease the heartbeat did not renew but that is still this node's (PostgreSQL skipped its locked row)
    /// changes nothing: the job goes back once its own lease runs short, given back rather than sent.
    @Test mutating func anUnrenewedLeaseStillRunsShort() throws {
        let ids = try enqueue(2)
        _ = try claimAndWork(at: now)
        state.leasesRenewed(LeaseRenewal(renewed: [ids[0]]), until: now + 60_000)
        _ = try apply(state.tick(now: now + 29_500).filter { if case .claim = $0 { false } else { true } }, at: now + 29_500)
        #expect(state.heldCount == 0 && !state.leaseIDs.contains(ids[1]), "postponed, and no longer this node's to renew")
    }

    /// Jobs the heartbeat found another node's are dropped wherever they are, with no write (the store would
    /// refuse it) and no send: queued, held for a busy endpoint, or computing (dropped when its work is done).
    /// One whose callback is out is left to its record, which the store refuses too.
    @Test mutating func jobsLostToAnotherNodeAreDropped() throws {
        let ids = try enqueue(2) + enqueue(1, url: "http://93.184.216.35/hook") + enqueue(1)
        for case .claim(let limit) in state.tick(now: now) {
            #expect(state.claimed(try store.claim(limit: limit, leaseMillis: 30_000, now: now), now: now) == 4)
        }
        func work(_ job: ClaimedJob) -> [DeliveryState.Action] {
            let d = DeliveryState.Delivery(job: job, work: WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now), unsaved: true)
            return state.workDone(d, checked: Result { () throws(CallbackURLRefusal) in try policy.check(job.callbackURL) }, now: now)
        }
        guard case .compute(let first) = state.nextForWorker(), case .compute(let second) = state.nextForWorker(),
            case .compute(let third) = state.nextForWorker()
        else { Issue.record("three jobs to compute"); return }
        let sends = try apply(work(first) + work(second), at: now)
        #expect(sends.map(\.delivery.job.id) == [ids[0]] && state.heldCount == 1, "the first is out, the second held for its endpoint")

        state.leasesRenewed(LeaseRenewal(renewed: [ids[0]], lost: Array(ids[1...])), until: now + 60_000)
        #expect(state.heldCount == 0 && state.leaseIDs == [ids[0]], "the held and the queued are dropped, no longer renewed")
        #expect(state.stats.leasesLost == 3 && DeliveryStats(json: state.stats.json).leasesLost == 3)
        guard case .idle = state.nextForWorker() else { Issue.record("the queued job was dropped"); return }
        #expect(work(third).isEmpty, "its work done, the computing job is dropped too: no send, no write")
        #expect(state.inHand == 1, "only the attempt in flight")
        let after = state.attemptFinished(sends[0], .transfer(.init(httpStatus: 200, error: nil)), durationMs: 1, now: now + 1)
        #expect(after.count == 1 && after.allSatisfy { if case .record = $0 { true } else { false } }, "its record, and no held job sent")
        #expect(state.tick(now: now + 29_500).allSatisfy { if case .claim = $0 { true } else { false } }, "nothing left to postpone")
    }

    @Test mutating func rescuedJobsAreCounted() {
        state.rescued(3)
        state.rescued(2)
        #expect(state.stats.rescued == 5)
        #expect(DeliveryStats(json: state.stats.json).rescued == 5, "published with the heartbeat")
    }

    @Test mutating func nothingIsClaimedWhileAnAttemptIsUnrecorded() throws {
        _ = try enqueue(1)
        #expect(state.tick(now: now).contains { if case .claim = $0 { true } else { false } })
        state.recordFailed(pending: 1)
        #expect(state.tick(now: now).isEmpty)
    }

    @Test mutating func stopReleasesQueuedAndHeldJobsAndClaimsNoMore() throws {
        let ids = try enqueue(3)
        for case .claim(let limit) in state.tick(now: now) {
            _ = state.claimed(try store.claim(limit: limit, leaseMillis: 30_000, now: now), now: now)
        }
        _ = try apply(state.stop(now: now), at: now)
        #expect(ids.allSatisfy { store.row($0)?.leaseUntil == 0 })
        #expect(state.tick(now: now).isEmpty)
        guard case .exit = state.nextForWorker() else { Issue.record("workers exit once stopped"); return }
    }

    @Test func openCircuitsOfTheLastHeartbeatAreRestored() {
        let open = Circuit(host: "93.184.216.34:80", state: .open, consecutiveFailures: 3, retryAt: now + 60_000)
        var state = DeliveryState(options: self.state.options, retry: RetryPolicy(schedule: [1], jitter: 0), circuits: [open])
        #expect(state.gate.circuits(now: now) == [open])
        let target = try! policy.check("http://93.184.216.34/hook")
        let job = ClaimedJob(
            id: "r", op: .hash, work: .toDo(.hash(input: "x", iterations: 1)), callbackURL: "http://93.184.216.34/hook", attempts: 0,
            attemptBase: 0, createdAt: now, leaseUntil: now + 30_000, dueAt: now)
        _ = state.claimed([job], now: now)
        _ = state.nextForWorker()
        let d = DeliveryState.Delivery(job: job, work: WorkResult(result: nil, error: nil, durationMs: 0, completedAt: now), unsaved: false)
        let actions = state.workDone(d, checked: .success(target), now: now)
        guard case .postpone(_, let until, _)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(until == now + 60_000)
    }
}
