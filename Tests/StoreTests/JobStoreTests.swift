import Config
import Foundation
import JSON
import Synchronization
import Testing
import WorkEngine

@testable import Store

/// The store's semantics, written once and run against both stores (SQLite, and PostgreSQL in a private
/// cluster): every test gets a fresh database. What only one of them has lives in SQLiteStoreTests.
@Suite struct JobStoreTests {
    func job(_ now: UnixMillis, key: String? = nil) -> NewJob {
        NewJob(
            id: RequestID.make(now: now), spec: .hash(input: "x", iterations: 1), input: ["input_data": "x", "callback_url": "http://h.example/"],
            callbackURL: "http://h.example/", idempotencyKey: key, createdAt: now)
    }

    func sync(_ now: UnixMillis, client: String, bytes: Int) -> SyncRecord {
        SyncRecord(
            id: RequestID.make(now: now), op: .text, input: ["text": .string(String(repeating: "s", count: bytes))], result: ["ok": true],
            createdAt: now, startedAt: now, completedAt: now, durationMs: 1, client: client)
    }

    func textJob(_ now: UnixMillis, client: String, count: Int = 20) -> NewJob {
        let text = String(repeating: "ab ", count: 3_000)
        return NewJob(
            id: RequestID.make(now: now), spec: .text(text: text, count: count), input: ["text": .string(text), "count": .number(Double(count))],
            callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: now, client: client)
    }

    @Test(arguments: Backend.allCases) func enqueueClaimDeliver(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now)
            #expect(try store.enqueue(j, backlogLimit: 10) == .accepted(id: j.id))
            #expect(try store.backlog() == 1)

            let claimed = try store.claim(limit: 5, leaseMillis: 30_000, now: now)
            #expect(claimed.map(\.id) == [j.id])
            #expect(claimed.first?.work == .toDo(.hash(input: "x", iterations: 1)), "read back as it was validated")
            // Leased: nobody else gets it.
            #expect(try store.claim(limit: 5, leaseMillis: 30_000, now: now + 1).isEmpty)
            #expect(try store.request(id: j.id)?.status == .processing)

            try store.saveResult(id: j.id, WorkResult(result: ["hash": "ab"], error: nil, durationMs: 3, completedAt: now + 5))
            #expect(try store.backlog() == 0)
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 1, at: now + 6, durationMs: 2, httpStatus: 500, error: "HTTP 500", nextAttemptAt: now + 1000),
                outcome: .retry(at: now + 1000))
            #expect(try store.request(id: j.id)?.status == .delivering)
            #expect(try store.claim(limit: 5, leaseMillis: 30_000, now: now + 999).isEmpty, "not due before its retry time")
            let again = try store.claim(limit: 5, leaseMillis: 30_000, now: now + 1000)
            #expect(again.first?.attempts == 1)
            #expect(again.first?.work == .done(WorkResult(result: ["hash": "ab"], error: nil, durationMs: 3, completedAt: now + 5)), "work is not redone after a failed delivery")
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 2, at: now + 1001, durationMs: 2, httpStatus: 200, error: nil, nextAttemptAt: nil),
                outcome: .delivered)

            let record = try #require(try store.request(id: j.id))
            #expect(record.status == .completed)
            #expect(record.trace.map(\.httpStatus) == [500, 200])
            #expect(record.deliveredAt == now + 1001)
        }
    }

    @Test(arguments: Backend.allCases) func expiredLeaseMakesTheJobDueAgain(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now)
            _ = try store.enqueue(j, backlogLimit: 10)
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now).count == 1)
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now + 999).isEmpty)
            let retaken = try store.claim(limit: 1, leaseMillis: 1000, now: now + 1000)
            #expect(retaken.map(\.id) == [j.id], "a dead daemon's job is picked up after its lease")
            try store.release(id: j.id)
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now + 1001).count == 1, "released jobs are due at once")
        }
    }

    /// What /status and /ui show of deliveryd: the jobs leased now (an expired lease is not in hand), bounded
    /// by the limit; the oldest pending job; failed attempts per minute (a 2xx without error is no failure).
    @Test(arguments: Backend.allCases) func jobsInHandOldestPendingAndFailuresPerMinute(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis() / 60_000 * 60_000
            let jobs = (0..<4).map { job(now + Int64($0)) }
            for j in jobs { _ = try store.enqueue(j, backlogLimit: 10) }
            #expect(try store.jobsInHand(now: now, limit: 10).isEmpty)
            #expect(try store.oldestPendingCreatedAt() == now)
            let claimed = try store.claim(limit: 3, leaseMillis: 1000, now: now + 10)
            #expect(claimed.count == 3)
            var held = try store.jobsInHand(now: now + 20, limit: 10)
            #expect(Set(held.map(\.id)) == Set(claimed.map(\.id)))
            #expect(held.allSatisfy { $0.op == .hash && $0.status == .processing && $0.leaseUntil == now + 1010 })
            #expect(held.allSatisfy { $0.owner == "" && $0.leasedAt == now + 10 }, "who holds it and since when")
            #expect(try store.jobsInHand(now: now + 20, limit: 2).count == 2, "bounded by the limit")
            #expect(try store.oldestPendingCreatedAt() == now + 3, "the one left pending")
            #expect(try store.jobsInHand(now: now + 1010, limit: 10).isEmpty, "a lease run out is in nobody's hand")

            // One delivered (2xx), one retried after a 500 in the first minute, one given up after an error a minute later.
            let work = WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now)
            for c in claimed { try store.saveResult(id: c.id, work) }
            held = try store.jobsInHand(now: now + 20, limit: 10)
            #expect(held.allSatisfy { $0.status == .delivering }, "a job whose callback is being sent is still in hand")
            try store.recordAttempt(
                id: claimed[0].id, attempt: AttemptRecord(n: 1, at: now + 100, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                outcome: .delivered)
            try store.recordAttempt(
                id: claimed[1].id, attempt: AttemptRecord(n: 1, at: now + 200, durationMs: 1, httpStatus: 500, error: "HTTP 500", nextAttemptAt: now + 5000),
                outcome: .retry(at: now + 5000))
            try store.recordAttempt(
                id: claimed[2].id, attempt: AttemptRecord(n: 1, at: now + 60_500, durationMs: 1, httpStatus: nil, error: "connection refused", nextAttemptAt: nil),
                outcome: .giveUp(reason: "connection refused"))
            #expect(try store.jobsInHand(now: now + 20, limit: 10).isEmpty, "recorded attempts give the lease back")
            #expect(try store.failedAttemptsPerMinute(since: now) == [MinuteCount(minute: now, count: 1), MinuteCount(minute: now + 60_000, count: 1)])
            #expect(try store.failedAttemptsPerMinute(since: now + 60_000) == [MinuteCount(minute: now + 60_000, count: 1)])
        }
    }

    @Test(arguments: Backend.allCases) func giveUpEndsFailedWithReason(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now)
            _ = try store.enqueue(j, backlogLimit: 10)
            _ = try store.claim(limit: 1, leaseMillis: 1000, now: now)
            try store.saveResult(id: j.id, WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now))
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 1, at: now, durationMs: 1, httpStatus: 410, error: "HTTP 410", nextAttemptAt: nil),
                outcome: .giveUp(reason: "receiver answered 410 Gone"))
            let record = try #require(try store.request(id: j.id))
            #expect(record.status == .failed)
            #expect(record.deliveryError == "receiver answered 410 Gone")
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now + 100_000).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases) func backlogBoundRefusesWithoutWriting(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            for i in 0..<3 { _ = try store.enqueue(job(now + Int64(i)), backlogLimit: 3) }
            #expect(try store.enqueue(job(now + 9), backlogLimit: 3) == .backlogFull(depth: 3))
            #expect(try store.requests(RequestQuery(limit: 100)).count == 3)
        }
    }

    @Test(arguments: Backend.allCases) func idempotencyKeyReturnsTheFirstJobForADay(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let first = job(now, key: "k1")
            #expect(try store.enqueue(first, backlogLimit: 10) == .accepted(id: first.id))
            #expect(try store.enqueue(job(now + 10, key: "k1"), backlogLimit: 10) == .duplicate(id: first.id))
            var different = job(now + 20, key: "k1")
            different.input = ["text": "another body"]
            #expect(try store.enqueue(different, backlogLimit: 10) == .keyReused(id: first.id))
            let dayLater = job(now + 24 * 3600 * 1000 + 1, key: "k1")
            #expect(try store.enqueue(dayLater, backlogLimit: 10) == .accepted(id: dayLater.id))
        }
    }

    @Test(arguments: Backend.allCases) func listingPagesNewestFirst(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            var ids: [String] = []
            for i in 0..<5 {
                let j = job(now + Int64(i) * 10)
                ids.append(j.id)
                _ = try store.enqueue(j, backlogLimit: 100)
            }
            try store.recordSync(
                SyncRecord(id: RequestID.make(now: now + 100), op: .text, input: ["text": "a"], result: ["word_count": 1],
                           createdAt: now + 100, startedAt: now + 100, completedAt: now + 101, durationMs: 1))
            let page1 = try store.requests(RequestQuery(mode: .async, limit: 2))
            #expect(page1.map(\.id) == [ids[4], ids[3]])
            let page2 = try store.requests(RequestQuery(mode: .async, before: page1.last?.id, limit: 2))
            #expect(page2.map(\.id) == [ids[2], ids[1]])
            #expect(try store.requests(RequestQuery(mode: .sync)).count == 1)
            #expect(try store.requests(RequestQuery(status: .completed)).count == 1)
            #expect(try store.requests(RequestQuery(status: .pending)).count == 5)
        }
    }

    @Test(arguments: Backend.allCases) func redeliverStartsAFreshSeries(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now)
            _ = try store.enqueue(j, backlogLimit: 10)
            #expect(try store.redeliver(id: j.id, now: now) == .notFinished(.pending))
            _ = try store.claim(limit: 1, leaseMillis: 1000, now: now)
            try store.saveResult(id: j.id, WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now))
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 1, at: now, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                outcome: .delivered)
            #expect(try store.redeliver(id: j.id, now: now + 10) == .requeued)
            let again = try #require(try store.claim(limit: 1, leaseMillis: 1000, now: now + 10).first)
            #expect(again.attempts == 1 && again.attemptBase == 1)
            #expect(again.work == .done(WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now)))
            #expect(try store.request(id: j.id)?.deliveredAt == nil)
            #expect(try store.redeliver(id: RequestID.make(), now: now) == .notFound)
        }
    }

    @Test(arguments: Backend.allCases) func postponeDefersWithoutAnAttempt(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now)
            _ = try store.enqueue(j, backlogLimit: 10)
            _ = try store.claim(limit: 1, leaseMillis: 60_000, now: now)
            try store.postpone(id: j.id, until: now + 500)
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now + 499).isEmpty)
            #expect(try store.claim(limit: 1, leaseMillis: 1000, now: now + 500).first?.attempts == 0)
        }
    }

    @Test(arguments: Backend.allCases) func pruneDeletesOnlyFinishedRequestsPastTheCutoff(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let old = job(now - 10_000)
            let fresh = job(now)
            let waiting = job(now - 20_000)
            for j in [old, fresh, waiting] { _ = try store.enqueue(j, backlogLimit: 10) }
            for j in [old, fresh] {
                _ = try store.claim(limit: 3, leaseMillis: 1000, now: now)
                try store.saveResult(id: j.id, WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: j.createdAt))
                try store.recordAttempt(
                    id: j.id, attempt: AttemptRecord(n: 1, at: j.createdAt, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                    outcome: .delivered)
            }
            #expect(try store.prune(finishedBefore: now - 5_000, limit: 100) == 1)
            #expect(try store.request(id: old.id) == nil)
            #expect(try store.request(id: fresh.id) != nil)
            #expect(try store.request(id: waiting.id) != nil, "unfinished jobs are never pruned, however old")
        }
    }

    @Test(arguments: Backend.allCases) func perClientBoundCountsUnfinishedJobs(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            var a = job(now)
            a.client = "203.0.113.1"
            for i in 0..<3 {
                var j = job(now + Int64(i))
                j.client = a.client
                #expect(try store.enqueue(j, backlogLimit: 100, clientLimit: 3) == .accepted(id: j.id))
            }
            #expect(try store.enqueue(a, backlogLimit: 100, clientLimit: 3) == .clientBacklogFull(depth: 3))
            var other = job(now + 10)
            other.client = "203.0.113.2"
            #expect(try store.enqueue(other, backlogLimit: 100, clientLimit: 3) == .accepted(id: other.id))
        }
    }

    @Test(arguments: Backend.allCases) func claimsTakeTurnsBetweenClients(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            var flood: [String] = []
            for i in 0..<10 {
                var j = job(now - 1_000 + Int64(i))
                j.client = "flood"
                flood.append(j.id)
                _ = try store.enqueue(j, backlogLimit: 100)
            }
            var late = job(now)
            late.client = "quiet"
            _ = try store.enqueue(late, backlogLimit: 100)
            // Oldest-first alone would hand out three flood jobs; turns give the quiet client its first job now.
            let claimed = try store.claim(limit: 3, leaseMillis: 30_000, now: now + 1).map(\.id)
            #expect(claimed.contains(late.id), "\(claimed)")
            #expect(claimed.filter(flood.contains).count == 2)
        }
    }

    @Test(arguments: Backend.allCases) func backlogCounterFollowsEveryTransition(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let jobs = (0..<3).map { job(now + Int64($0)) }
            for j in jobs { _ = try store.enqueue(j, backlogLimit: 100) }
            #expect(try store.backlog() == 3)
            let claimed = try store.claim(limit: 1, leaseMillis: 30_000, now: now + 10)
            #expect(try store.backlog() == 3, "processing still counts")
            try store.saveResult(id: claimed[0].id, WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now + 11))
            #expect(try store.backlog() == 2, "delivering does not")
            try store.recordAttempt(
                id: claimed[0].id, attempt: AttemptRecord(n: 1, at: now + 12, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                outcome: .delivered)
            #expect(try store.backlog() == 2)
            #expect(try store.prune(finishedBefore: now + 1_000_000, limit: 10) == 1)
            #expect(try store.backlog() == 2)
            _ = try store.recordAttempts([
                AttemptWrite(
                    id: jobs[1].id, attempt: AttemptRecord(n: 1, at: now + 13, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                    outcome: .delivered, computed: WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now + 13)),
            ])
            // Written straight over a pending row (deliveryd never does), the counter still follows the status.
            #expect(try store.backlog() == 1)
        }
    }

    /// An attempt for a request deleted meanwhile (retention) is dropped, not a foreign-key failure of the
    /// whole batch: the recorder would retry that batch forever, and deliveryd claims nothing meanwhile.
    @Test(arguments: Backend.allCases) func anAttemptForADeletedRequestDoesNotFailTheBatch(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let (gone, live) = (job(now), job(now + 1))
            for j in [gone, live] { _ = try store.enqueue(j, backlogLimit: 10) }
            #expect(try store.claim(limit: 5, leaseMillis: 30_000, now: now + 10).count == 2)
            let work = WorkResult(result: ["ok": true], error: nil, durationMs: 1, completedAt: now + 11)
            func delivered(_ id: String, n: Int, at: UnixMillis) -> AttemptWrite {
                AttemptWrite(
                    id: id, attempt: AttemptRecord(n: n, at: at, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                    outcome: .delivered, computed: work)
            }
            try store.recordAttempts([delivered(gone.id, n: 1, at: now + 12)])
            #expect(try store.prune(finishedBefore: now + 1_000_000, limit: 10) == 1)
            #expect(try store.request(id: gone.id) == nil)

            try store.recordAttempts([delivered(gone.id, n: 2, at: now + 13), delivered(live.id, n: 1, at: now + 13)])
            #expect(try store.request(id: gone.id) == nil, "not brought back")
            let record = try #require(try store.request(id: live.id))
            #expect(record.status == .completed && record.attempts == 1, "the rest of the batch is recorded")
        }
    }

    func node(_ id: String, _ name: String, heartbeat: UnixMillis, started: UnixMillis = 0, stopped: UnixMillis? = nil) -> NodeStatus {
        NodeStatus(id: id, name: name, pid: 42, startedAt: started, heartbeatAt: heartbeat, stoppedAt: stopped)
    }

    /// One claim per owner, in order: returns each owner's job id.
    func claimOne(_ store: any JobStore, owners: [String], leaseMillis: Int64, now: UnixMillis) throws -> [String] {
        try owners.map { owner in try #require(try store.claim(limit: 1, leaseMillis: leaseMillis, now: now, owner: owner).first).id }
    }

    /// A heartbeat renews the leases of its jobs in hand that it still owns and that have not run out, and no
    /// other: not another node's, not one given back, not once stopped.
    @Test(arguments: Backend.allCases) func aHeartbeatRenewsOnlyItsOwnLiveLeases(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            for i in 0..<4 { _ = try store.enqueue(job(now - 10 + Int64(i)), backlogLimit: 10) }
            let ids = try claimOne(store, owners: ["a", "a", "b", "a"], leaseMillis: 1000, now: now)
            try store.release(id: ids[3], owner: "a")
            let renewal = try store.heartbeat(node("a", "node-a", heartbeat: now + 500), renew: ids + ["nope"], leaseMillis: 1000, now: now + 500)
            #expect(Set(renewal.renewed) == Set(ids[0...1]), "b's job and the released one are not a's to renew")
            #expect(Set(renewal.lost) == [ids[2], "nope"], "b's job and one with no row are lost; the released one is a's still")
            let held = try store.jobsInHand(now: now + 1200, limit: 10)
            #expect(held.map(\.id).sorted() == ids[0...1].sorted(), "b's lease ran out at its end; a's runs on")
            #expect(held.allSatisfy { $0.leaseUntil == now + 1500 && $0.owner == "a" && $0.leasedAt == now }, "renewal moves the end, not the claim")
            #expect(try store.heartbeat(node("a", "node-a", heartbeat: now + 1600), renew: ids, leaseMillis: 1000, now: now + 1600).renewed.isEmpty,
                "a lease run out is not renewed: another node may have it")
            _ = try store.claim(limit: 1, leaseMillis: 1000, now: now + 1600, owner: "a")
            #expect(
                try store.heartbeat(node("a", "node-a", heartbeat: now + 1700, stopped: now + 1700), renew: ids, leaseMillis: 1000, now: now + 1700)
                    == LeaseRenewal(), "a stopped node renews nothing")
        }
    }

    /// The review's sequence: a's heartbeat stops, the rescuer makes its job due, b claims it. What a still
    /// writes about the job (its result, a postponement, a release, an attempt's outcome) changes nothing on
    /// the row: b's lease holds, b's renewal keeps it, and b's completion stands.
    @Test(arguments: Backend.allCases) func aNodeThatLostALeaseCannotWriteTheJob(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let j = job(now - 30_000)
            _ = try store.enqueue(j, backlogLimit: 10)
            _ = try store.heartbeat(node("a", "node-a", heartbeat: now - 20_000), renew: [], leaseMillis: 60_000, now: now - 20_000)
            _ = try store.heartbeat(node("b", "node-b", heartbeat: now), renew: [], leaseMillis: 60_000, now: now)
            #expect(try claimOne(store, owners: ["a"], leaseMillis: 60_000, now: now - 20_000) == [j.id])
            #expect(try store.rescue(nodeTimeoutMillis: 10_000, now: now) == [Rescue(owner: "a", name: "node-a", jobs: 1)])
            #expect(try claimOne(store, owners: ["b"], leaseMillis: 60_000, now: now + 1) == [j.id])

            let aWork = WorkResult(result: ["by": "a"], error: nil, durationMs: 1, completedAt: now + 2)
            try store.saveResult(id: j.id, owner: "a", aWork)
            try store.postpone(id: j.id, owner: "a", until: now + 100_000)
            try store.release(id: j.id, owner: "a")
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 1, at: now + 3, durationMs: 1, httpStatus: 500, error: "HTTP 500", nextAttemptAt: now + 5000),
                outcome: .retry(at: now + 5000), owner: "a")
            let held = try store.jobsInHand(now: now + 10, limit: 10)
            #expect(held.map(\.id) == [j.id] && held.first?.owner == "b" && held.first?.leaseUntil == now + 1 + 60_000, "b's lease holds")
            let untouched = try #require(try store.request(id: j.id))
            #expect(untouched.status == .processing && untouched.result == nil && untouched.attempts == 0 && untouched.trace.isEmpty)
            #expect(try store.claim(limit: 10, leaseMillis: 60_000, now: now + 20, owner: "c").isEmpty, "nobody else can claim it")

            let renewal = try store.heartbeat(node("b", "node-b", heartbeat: now + 1000), renew: [j.id], leaseMillis: 60_000, now: now + 1000)
            #expect(renewal == LeaseRenewal(renewed: [j.id]), "b's renewal still holds")
            let stale = try store.heartbeat(node("a", "node-a", heartbeat: now + 1000), renew: [j.id], leaseMillis: 60_000, now: now + 1000)
            #expect(stale == LeaseRenewal(lost: [j.id]), "a learns it lost the job")

            try store.recordAttempts([
                AttemptWrite(
                    id: j.id, attempt: AttemptRecord(n: 1, at: now + 1100, durationMs: 1, httpStatus: 200, error: nil, nextAttemptAt: nil),
                    outcome: .delivered, computed: WorkResult(result: ["by": "b"], error: nil, durationMs: 1, completedAt: now + 1100))
            ], owner: "b")
            try store.recordAttempt(
                id: j.id, attempt: AttemptRecord(n: 2, at: now + 1200, durationMs: 1, httpStatus: 500, error: "HTTP 500", nextAttemptAt: nil),
                outcome: .giveUp(reason: "attempts exhausted"), owner: "a")
            let done = try #require(try store.request(id: j.id))
            #expect(done.status == .completed && done.result == ["by": "b"] && done.attempts == 1 && done.deliveryError == nil, "b's completion stands")
            #expect(done.trace.map(\.httpStatus) == [200], "only the owner's attempts are in its history")
        }
    }

    /// The rescuer takes back the leases of nodes that are not alive (dead, stopped, or with no row) and
    /// leaves the alive node's alone; its jobs are due at once.
    @Test(arguments: Backend.allCases) func theRescueTakesBackOnlyDeadNodesJobs(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            for i in 0..<4 { _ = try store.enqueue(job(now - 10 + Int64(i)), backlogLimit: 10) }
            for n in [node("alive", "a", heartbeat: now), node("dead", "d", heartbeat: now - 10_000), node("stopped", "s", heartbeat: now, stopped: now)] {
                _ = try store.heartbeat(n, renew: [], leaseMillis: 60_000, now: n.heartbeatAt)
            }
            let ids = try claimOne(store, owners: ["alive", "dead", "stopped", "ghost"], leaseMillis: 60_000, now: now)
            #expect(try store.claim(limit: 10, leaseMillis: 60_000, now: now, owner: "alive").isEmpty, "every job is leased")
            let rescued = try store.rescue(nodeTimeoutMillis: 10_000, now: now + 1)
            #expect(
                rescued.sorted { $0.owner < $1.owner }
                    == [Rescue(owner: "dead", name: "d", jobs: 1), Rescue(owner: "ghost", name: nil, jobs: 1), Rescue(owner: "stopped", name: "s", jobs: 1)])
            #expect(try store.jobsInHand(now: now + 1, limit: 10).map(\.id) == [ids[0]], "the alive node keeps its job")
            let again = try store.claim(limit: 10, leaseMillis: 60_000, now: now + 2, owner: "alive")
            #expect(Set(again.map(\.id)) == Set(ids[1...]), "due at once, not after their 60 s leases")
            #expect(try store.rescue(nodeTimeoutMillis: 10_000, now: now + 3).isEmpty, "nothing left to rescue")
            #expect(try store.rescue(nodeTimeoutMillis: 10_000, now: now + 10_000).count == 1, "the alive node, once silent for the timeout, is dead too")
        }
    }

    /// A chore has one holder: it keeps it by asking again, and another node gets it only once its time passed
    /// or its holder gave it up.
    @Test(arguments: Backend.allCases) func aChoreHasOneHolderAtATime(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let t = WallClock.nowMillis()
            #expect(try store.takeChore(.rescue, node: "a", until: t + 1000, now: t), "free: taken")
            #expect(try !store.takeChore(.rescue, node: "b", until: t + 1500, now: t + 500), "held by a")
            #expect(try store.takeChore(.rescue, node: "a", until: t + 1500, now: t + 500), "its holder keeps it")
            #expect(try !store.takeChore(.rescue, node: "b", until: t + 2400, now: t + 1400))
            #expect(try store.takeChore(.retention, node: "b", until: t + 2400, now: t + 1400), "each chore on its own")
            #expect(try store.takeChore(.rescue, node: "b", until: t + 2500, now: t + 1500), "a's time passed: b's now")
            #expect(try !store.takeChore(.rescue, node: "a", until: t + 2600, now: t + 1600))
            #expect(try store.releaseLeases(owner: "b") == 0)
            #expect(try store.takeChore(.rescue, node: "a", until: t + 2600, now: t + 1600), "b gave its chores up when it stopped")
            #expect(try store.takeChore(.retention, node: "a", until: t + 2600, now: t + 1600))
        }
    }

    /// One row per node start, written again by each heartbeat; a clean stop gives back only that node's
    /// leases; rows stopped or silent past the cut are pruned.
    @Test(arguments: Backend.allCases) func nodeRowsAndACleanStop(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            // On a whole second: a circuit's time is stored as ISO 8601.
            let circuit = Circuit(host: "10.0.0.1:443", state: .open, consecutiveFailures: 5, retryAt: (now / 1000 + 30) * 1000)
            var b = node("b2", "b", heartbeat: now, started: now)
            (b.activeWorkers, b.circuits) = (3, [circuit])
            for n in [node("b1", "b", heartbeat: now - 7_200_000, started: now - 9_000_000, stopped: now - 7_200_000), node("a1", "a", heartbeat: now - 10), b] {
                _ = try store.heartbeat(n, renew: [], leaseMillis: 1000, now: n.heartbeatAt)
            }
            b.heartbeatAt = now + 1000
            _ = try store.heartbeat(b, renew: [], leaseMillis: 1000, now: now + 1000)
            let rows = try store.nodes()
            #expect(rows.map(\.id) == ["a1", "b1", "b2"], "one row per start, by name then start")
            #expect(rows.last == b, "every field read back as written, the heartbeat's time moved")
            #expect(rows[1].stoppedAt == now - 7_200_000)

            for i in 0..<3 { _ = try store.enqueue(job(now - 10 + Int64(i)), backlogLimit: 10) }
            _ = try claimOne(store, owners: ["a1", "b2", "b2"], leaseMillis: 60_000, now: now)
            #expect(try store.releaseLeases(owner: "b2") == 2, "its own two")
            #expect(try store.jobsInHand(now: now, limit: 10).map(\.owner) == ["a1"])
            #expect(try store.pruneNodes(before: now - 3_600_000) == 1)
            #expect(try store.nodes().map(\.id) == ["a1", "b2"])
            #expect(try store.releaseLeases(owner: nil) == 1, "nil: every lease")
        }
    }

    @Test(arguments: Backend.allCases) func deliveryStatsRideOnTheHeartbeat(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            var stats = DeliveryStats()
            stats.recorded(.delivered)
            stats.recorded(.retry(at: 5))
            stats.recorded(.giveUp(reason: "x"))
            stats.commitToDelivered.observe(0.004)  // first bucket (<= 5 ms)
            stats.commitToDelivered.observe(7200)  // above every bound
            stats.claimLag.observe(-1)  // clock skew reads as no lag
            let now = WallClock.nowMillis()
            _ = try store.heartbeat(NodeStatus(id: "n1", name: "a", pid: 7, startedAt: now, heartbeatAt: now, stats: stats), renew: [], leaseMillis: 1000, now: now)
            let read = try #require(try store.nodes().first).stats
            #expect(read == stats)
            #expect(read.attempts == [.delivered: 1, .retry: 1, .gaveUp: 1])
            #expect(read.commitToDelivered.counts.first == 1 && read.commitToDelivered.counts.last == 1 && read.commitToDelivered.count == 2)
            #expect(read.claimLag.sum == 0)
            #expect(DeliveryStats(json: ["attempts": "garbage"]) == DeliveryStats(), "an unreadable snapshot reads as empty")
        }
    }

    /// A client's share counts its sync records and its async jobs with the reserve for their results,
    /// checked in the transaction that would insert; other clients are not affected; deletes give it back.
    @Test(arguments: Backend.allCases) func perClientStorageBoundCountsSyncRecordsAndReserves(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            try store.recordSync(sync(now, client: "a", bytes: 40_000), clientStorageLimit: 100_000)
            try store.recordSync(sync(now + 1, client: "a", bytes: 40_000), clientStorageLimit: 100_000)
            #expect(try store.clientStorage("a") > 80_000)
            #expect(throws: ClientStorageFull.self) { try store.recordSync(sync(now + 2, client: "a", bytes: 40_000), clientStorageLimit: 100_000) }
            #expect(try store.requests(RequestQuery(mode: .sync)).count == 2, "nothing was written")
            let refused = try store.enqueue(textJob(now + 3, client: "a"), backlogLimit: 100, clientStorageLimit: 100_000)
            guard case .clientStorageFull(let stored) = refused else { Issue.record("\(refused)"); return }
            #expect(stored == (try store.clientStorage("a")))
            try store.recordSync(sync(now + 4, client: "b", bytes: 40_000), clientStorageLimit: 100_000)

            // An async job holds its result's bound until the result is written, then what it really takes.
            let job = textJob(now + 5, client: "c")
            #expect(try store.enqueue(job, backlogLimit: 100, clientStorageLimit: 1 << 30) == .accepted(id: job.id))
            let reserve = Int64(job.spec.resultBytesBound)
            #expect(try store.storageUsage().reservedBytes == reserve)
            #expect(try store.clientStorage("c") == Int64(job.input.text.utf8.count + job.spec.stored.text.utf8.count) + reserve)
            _ = try store.claim(limit: 10, leaseMillis: 30_000, now: now + 6)
            let result = WorkEngine(sleep: { _ in }).run(job.spec)
            try store.saveResult(id: job.id, WorkResult(result: result, error: nil, durationMs: 1, completedAt: now + 7))
            #expect(try store.storageUsage().reservedBytes == 0)
            #expect(try store.clientStorage("c") == Int64(job.input.text.utf8.count + job.spec.stored.text.utf8.count + result.text.utf8.count))

            #expect(try store.pruneSyncRecords(limit: 10) == 3)
            #expect(try store.clientStorage("a") == 0 && store.clientStorage("b") == 0, "deletes give the share back")
        }
    }

    /// Near the bound deliveryd deletes sync records, oldest first; async jobs stay.
    /// A sync request whose work failed (a handler's error) is recorded failed, with its error and no result.
    @Test(arguments: Backend.allCases) func failedSyncRecordKeepsItsError(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            var record = sync(WallClock.nowMillis(), client: "a", bytes: 10)
            record.error = #"{"error":"handler_failed"}"#
            try store.recordSync(record)
            let read = try #require(try store.request(id: record.id))
            #expect(read.status == .failed && read.mode == .sync)
            #expect(read.error == record.error && read.result == nil)
        }
    }

    @Test(arguments: Backend.allCases) func syncRecordsArePrunedOldestFirst(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ throws in
            let now = WallClock.nowMillis()
            let records = (0..<3).map { sync(now + Int64($0), client: "a", bytes: 10) }
            for r in records { try store.recordSync(r) }
            let job = job(now)
            _ = try store.enqueue(job, backlogLimit: 10)
            #expect(try store.pruneSyncRecords(limit: 2) == 2)
            #expect(try store.request(id: records[0].id) == nil && store.request(id: records[1].id) == nil)
            #expect(try store.request(id: records[2].id) != nil && store.request(id: job.id) != nil)
        }
    }

    @Test(arguments: Backend.allCases) func groupCommitUnderConcurrency(_ backend: Backend) async throws {
        let fixture = try Fixture(backend)
        let store = try fixture.open()
        let base = WallClock.nowMillis()
        let accepted = try await withThrowingTaskGroup(of: Int.self) { group in
            for t in 0..<8 {
                group.addTask {
                    var n = 0
                    for i in 0..<50 {
                        let j = NewJob(
                            id: RequestID.make(now: base + Int64(t * 100 + i)), spec: .text(text: "a", count: 1), input: ["text": "a"],
                            callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: base)
                        if case .accepted = try store.enqueue(j, backlogLimit: 1_000_000) { n += 1 }
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(accepted == 400)
        #expect(try store.backlog() == 400)
        withExtendedLifetime(fixture) {}
    }

    /// Jobs and sync records of several clients from many threads at once (PostgreSQL inserts each batch in
    /// one statement, its counters updated once per statement): every client's share and the reserve equal
    /// what the accepted rows hold, and each job's turn is its own.
    @Test(arguments: Backend.allCases) func countersFollowConcurrentInserts(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let nodes = [try fixture.open(), try fixture.open()]
        let now = WallClock.nowMillis()
        let jobs = Mutex<[NewJob]>([])
        let records = Mutex<[SyncRecord]>([])
        DispatchQueue.concurrentPerform(iterations: 12) { t in
            for i in 0..<10 {
                let client = "c\((t + i) % 3)"
                if i % 3 == 0 {
                    let record = sync(now + Int64(t * 10 + i), client: client, bytes: 100 + t)
                    if (try? nodes[t % 2].recordSync(record, clientStorageLimit: .max)) != nil { records.withLock { $0.append(record) } }
                } else {
                    let j = textJob(now + Int64(t * 10 + i), client: client, count: 1 + i)
                    if case .accepted? = try? nodes[t % 2].enqueue(j, backlogLimit: 1000) { jobs.withLock { $0.append(j) } }
                }
            }
        }
        let (accepted, recorded) = (jobs.withLock { $0 }, records.withLock { $0 })
        #expect(accepted.count == 12 * 6 && recorded.count == 12 * 4)
        for c in 0..<3 {
            let client = "c\(c)"
            let expected =
                accepted.filter { $0.client == client }.reduce(Int64(0)) {
                    $0 + Int64($1.input.text.utf8.count + $1.spec.stored.text.utf8.count + $1.spec.resultBytesBound)
                } + recorded.filter { $0.client == client }.reduce(Int64(0)) { $0 + Int64($1.input.text.utf8.count + $1.result.text.utf8.count) }
            #expect(try nodes[0].clientStorage(client) == expected, "\(client)")
        }
        #expect(try nodes[1].storageUsage().reservedBytes == accepted.reduce(Int64(0)) { $0 + Int64($1.spec.resultBytesBound) })
        #expect(try nodes[1].backlog() == accepted.count)
        let claimed = try nodes[0].claim(limit: 1000, leaseMillis: 30_000, now: now + 1000)
        #expect(claimed.count == accepted.count)
        withExtendedLifetime(fixture) {}
    }

    /// A write that fails in the database (here a job whose id is taken) fails alone: the others of its batch
    /// are committed.
    @Test(arguments: Backend.allCases) func aFailingWriteFailsAlone(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let store = try fixture.open()
        let now = WallClock.nowMillis()
        let taken = job(now)
        #expect(try store.enqueue(taken, backlogLimit: 1000) == .accepted(id: taken.id))
        let outcomes = Mutex<[Int: Bool]>([:])
        DispatchQueue.concurrentPerform(iterations: 16) { t in
            var j = job(now + 1 + Int64(t))
            if t % 4 == 0 { j.id = taken.id }
            let ok = (try? store.enqueue(j, backlogLimit: 1000)).map { $0 == .accepted(id: j.id) } ?? false
            outcomes.withLock { $0[t] = ok }
        }
        let all = outcomes.withLock { $0 }
        #expect(all.filter { $0.key % 4 == 0 }.allSatisfy { !$0.value }, "the taken id is refused every time")
        #expect(all.filter { $0.key % 4 != 0 }.allSatisfy { $0.value }, "\(all)")
        #expect(try store.backlog() == 13)
        withExtendedLifetime(fixture) {}
    }

    @Test(arguments: Backend.allCases) func sizeBoundThrowsStoreFull(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let small = try fixture.open(bound: .sets(1 << 20))
        let text = String(repeating: "x", count: 9_000)
        var thrown: (any Error)?
        for i in 0..<300 {
            var j = job(WallClock.nowMillis())
            j.input = .object(["text": .string(text + "\(i)")])
            do { _ = try small.enqueue(j, backlogLimit: 10_000) } catch {
                thrown = error
                break
            }
        }
        #expect(thrown is StoreFull, "\(String(describing: thrown))")
        // Reads still work.
        #expect(try small.backlog() > 50)
    }

    /// The front door (workfcgi) stops where used plus reserved would pass the bound; deliveryd, following the
    /// stored bound (with headroom on SQLite), still works, records and delivers every job that was accepted.
    @Test(arguments: Backend.allCases) func acceptedJobsFitAfterTheFrontDoorStops(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let front = try fixture.open(bound: .sets(1 << 20))
        let deliveryd = try fixture.open(bound: .follows(fallback: 4 << 30), deliveryd: true)
        let now = WallClock.nowMillis()
        var accepted: [NewJob] = []
        var full: (any Error)?
        for i in 0..<50 {
            let j = textJob(now + Int64(i), client: "c\(i)")
            do { if case .accepted = try front.enqueue(j, backlogLimit: 1000) { accepted.append(j) } } catch {
                full = error
                break
            }
        }
        #expect(full is StoreFull, "\(String(describing: full))")
        #expect(accepted.count >= 3)
        let usage = try front.storageUsage()
        #expect(usage.usedBytes + usage.reservedBytes <= 1 << 20 && usage.reservedBytes > 0)
        #expect(usage.state(nearlyAt: 0.9, now: WallClock.nowMillis()) == .full, "it just refused one")
        #expect(throws: StoreFull.self) { try front.recordSync(sync(now, client: "s", bytes: 300_000), clientStorageLimit: .max) }

        let claimed = try deliveryd.claim(limit: 100, leaseMillis: 30_000, now: now + 100)
        #expect(claimed.count == accepted.count)
        for job in claimed {
            guard case .toDo(let spec) = job.work else { continue }
            let computed = WorkResult(result: WorkEngine(sleep: { _ in }).run(spec), error: nil, durationMs: 1, completedAt: now + 101)
            for n in 1...3 {  // a few failed attempts each, then the one that delivers
                let last = n == 3
                try deliveryd.recordAttempts([
                    AttemptWrite(
                        id: job.id,
                        attempt: AttemptRecord(
                            n: n, at: now + 101, durationMs: 1, httpStatus: last ? 200 : 503, error: last ? nil : "HTTP 503 \(String(repeating: "e", count: 200))",
                            nextAttemptAt: nil),
                        outcome: last ? .delivered : .retry(at: now + 102), computed: n == 1 ? computed : nil),
                ])
            }
        }
        for job in accepted { #expect(try deliveryd.request(id: job.id)?.status == .completed) }
        if backend == .sqlite {
            let file = try FileManager.default.attributesOfItem(atPath: fixture.sqlitePath)[.size] as? Int64 ?? 0
            #expect(file <= (1 << 20) + SizeBound.headroom(1 << 20), "\(file) bytes")
        }
    }

    /// One bound, whatever each daemon was given: deliveryd follows what workfcgi stored, and a workfcgi
    /// restarted with another value changes it for both.
    @Test(arguments: Backend.allCases) func theBoundIsTheOneStoredInTheDatabase(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let early = try fixture.open(bound: .follows(fallback: 4 << 30), deliveryd: true)
        #expect(try early.storageUsage().boundBytes == 4 << 30, "its own until workfcgi has stored one")
        _ = try fixture.open(bound: .sets(1 << 20))
        #expect(try early.storageUsage().boundBytes == 1 << 20, "re-read by storageUsage")
        let restarted = try fixture.open(bound: .sets(3 << 20))
        #expect(try early.storageUsage().boundBytes == 3 << 20)
        #expect(try restarted.storageUsage().boundBytes == 3 << 20)
    }

    // MARK: several nodes on one database: the database decides, never a count in one process's memory

    /// Two nodes (two stores, each with its own group commit) enqueue at once: the backlog bound holds
    /// exactly, not per node.
    @Test(arguments: Backend.allCases) func boundsHoldAcrossNodes(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let nodes = [try fixture.open(), try fixture.open()]
        let now = WallClock.nowMillis()
        let outcomes = Mutex<[EnqueueOutcome]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { t in
            for i in 0..<10 {
                var j = job(now + Int64(t * 10 + i))
                j.client = "c\(t)"
                let outcome = try? nodes[t % 2].enqueue(j, backlogLimit: 40)
                outcomes.withLock { $0.append(outcome ?? .backlogFull(depth: -1)) }
            }
        }
        let all = outcomes.withLock { $0 }
        #expect(!all.contains(.backlogFull(depth: -1)), "no enqueue failed")
        #expect(all.filter { if case .accepted = $0 { true } else { false } }.count == 40)
        #expect(try nodes[0].backlog() == 40 && nodes[1].backlog() == 40)
        #expect(try nodes[1].requests(RequestQuery(limit: 1000)).count == 40, "nothing refused was written")
        #expect(try nodes[0].claim(limit: 1000, leaseMillis: 30_000, now: now + 1000).count == 40)
        withExtendedLifetime(fixture) {}
    }

    /// The same for one client's bound.
    @Test(arguments: Backend.allCases) func perClientBoundHoldsAcrossNodes(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let nodes = [try fixture.open(), try fixture.open()]
        let now = WallClock.nowMillis()
        let accepted = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<5 {
                var j = job(now + Int64(t * 10 + i))
                j.client = "a"
                if case .accepted? = try? nodes[t % 2].enqueue(j, backlogLimit: 1000, clientLimit: 7) { accepted.withLock { $0 += 1 } }
            }
        }
        #expect(accepted.withLock { $0 } == 7)
        #expect(try nodes[0].backlog() == 7)
        withExtendedLifetime(fixture) {}
    }

    /// The same idempotency key sent to two nodes at once: one job, every answer names it.
    @Test(arguments: Backend.allCases) func idempotencyKeyIsUniqueAcrossNodes(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let nodes = [try fixture.open(), try fixture.open()]
        let now = WallClock.nowMillis()
        let outcomes = Mutex<[EnqueueOutcome?]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { t in
            let outcome = try? nodes[t % 2].enqueue(job(now + Int64(t), key: "k"), backlogLimit: 1000)
            outcomes.withLock { $0.append(outcome) }
        }
        let all = outcomes.withLock { $0 }
        let ids = all.compactMap { outcome -> String? in
            switch outcome {
            case .accepted(let id)?, .duplicate(let id)?: id
            default: nil
            }
        }
        #expect(ids.count == 16 && Set(ids).count == 1, "\(all)")
        #expect(all.filter { if case .accepted? = $0 { true } else { false } }.count == 1)
        #expect(try nodes[0].backlog() == 1)
        withExtendedLifetime(fixture) {}
    }

    /// Two deliveryd nodes claiming at once never get the same job.
    @Test(arguments: Backend.allCases) func claimsFromTwoNodesNeverShareAJob(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let front = try fixture.open()
        let nodes = [try fixture.open(deliveryd: true), try fixture.open(deliveryd: true)]
        let now = WallClock.nowMillis()
        for i in 0..<200 {
            var j = job(now + Int64(i))
            j.client = "c\(i % 7)"
            _ = try front.enqueue(j, backlogLimit: 1000)
        }
        let claimed = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            while let batch = try? nodes[t % 2].claim(limit: 16, leaseMillis: 30_000, now: now + 1000), !batch.isEmpty {
                claimed.withLock { $0 += batch.map(\.id) }
            }
        }
        let ids = claimed.withLock { $0 }
        #expect(ids.count == 200 && Set(ids).count == 200)
        withExtendedLifetime(fixture) {}
    }

    /// Nodes starting together on a fresh database: each finds the schema whole (migrations run once).
    @Test(arguments: Backend.allCases) func nodesStartingTogetherMigrateOnce(_ backend: Backend) throws {
        let fixture = try Fixture(backend)
        let opened = Mutex<[any JobStore]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            if let store = try? fixture.open() { opened.withLock { $0.append(store) } }
        }
        let stores = opened.withLock { $0 }
        #expect(stores.count == 4)
        for store in stores { #expect(try store.backlog() == 0) }
    }
}
