import Logging
import MemoryStore
import Store
import Testing
import WorkEngine

@testable import Delivery

/// The chore lease as its holder reckons it, from the store's answers alone.
@Suite struct ChoreLeaseTests {
    let t: UnixMillis = 1_000_000

    @Test func aGrantIsBelievedUntilAMarginBeforeItsEnd() {
        var lease = ChoreLease(ttlMillis: 10_000)
        #expect(!lease.holds(now: t), "not held before the store said so")
        #expect(lease.ask(now: t) == t + 10_000)
        let took = lease.answered(taken: true, askedAt: t, now: t + 5)
        #expect(took, "taking it is a change")
        #expect(lease.holds(now: t + 8_999) && !lease.holds(now: t + 9_000), "a second's margin before the grant's end")
        let renewed = lease.answered(taken: true, askedAt: t + 1_000, now: t + 1_000)
        #expect(!renewed, "a renewal is no change")
        #expect(lease.holds(now: t + 9_999))
    }

    @Test func aRefusalOrAFailedAskDropsIt() {
        var lease = ChoreLease(ttlMillis: 10_000)
        lease.answered(taken: true, askedAt: t, now: t)
        let lost = lease.answered(taken: false, askedAt: t + 1_000, now: t + 1_000)
        #expect(lost, "another node holds it now")
        #expect(!lease.holds(now: t + 1_000))
    }

    /// The shortest node timeout (2 s) asked every second: held without a gap, and the margin (a quarter)
    /// still leaves the holder done before another node may take it.
    @Test func theShortestTimeoutIsHeldWithoutAGap() {
        var lease = ChoreLease(ttlMillis: 2_000)
        #expect(lease.marginMillis == 500)
        for second in 0..<5 {
            let at = t + UnixMillis(second) * 1_000
            lease.answered(taken: true, askedAt: at, now: at)
            #expect(lease.holds(now: at) && lease.holds(now: at + 999))
        }
        #expect(!lease.holds(now: t + 4_000 + 1_500), "a holder that stopped asking stops before its grant ends")
    }
}

/// When a node may judge others dead: only after its own heartbeats succeeded for a whole node timeout.
@Suite struct RescueReadinessTests {
    let t: UnixMillis = 1_000_000

    @Test func notBeforeAWholeTimeoutOfGoodHeartbeats() {
        var r = RescueReadiness(nodeTimeoutMillis: 10_000)
        #expect(!r.mayRescue(now: t), "no heartbeat yet")
        for s in 0...10 { r.heartbeat(succeeded: true, now: t + UnixMillis(s) * 1_000) }
        #expect(r.healthySince == t)
        #expect(!r.mayRescue(now: t + 9_999) && r.mayRescue(now: t + 10_000))
    }

    /// A database outage of 30 s (between the 10 s node timeout and the 60 s lease): when it ends, every
    /// node's row is 30 s old. No rescue until this node has beaten for a timeout, and the live nodes with it.
    @Test func anOutageStartsTheWaitAgain() {
        var r = RescueReadiness(nodeTimeoutMillis: 10_000)
        for s in 0...20 { r.heartbeat(succeeded: true, now: t + UnixMillis(s) * 1_000) }
        #expect(r.mayRescue(now: t + 20_000))
        for s in 21...50 { r.heartbeat(succeeded: false, now: t + UnixMillis(s) * 1_000) }
        #expect(!r.mayRescue(now: t + 50_000) && r.healthySince == nil)
        r.heartbeat(succeeded: true, now: t + 51_000)
        #expect(!r.mayRescue(now: t + 51_000), "the first heartbeat after the outage: the others' rows are still old")
        for s in 52...60 { r.heartbeat(succeeded: true, now: t + UnixMillis(s) * 1_000) }
        #expect(!r.mayRescue(now: t + 60_999) && r.mayRescue(now: t + 61_000))
        r.heartbeat(succeeded: false, now: t + 61_500)
        #expect(!r.mayRescue(now: t + 62_000), "one failure is enough")
    }

    /// A heartbeat stuck in a call while the database was away succeeds late, without any failure.
    @Test func aLongGapBetweenHeartbeatsStartsTheWaitAgain() {
        var r = RescueReadiness(nodeTimeoutMillis: 10_000)
        #expect(r.maxGapMillis == 5_000)
        for s in 0...10 { r.heartbeat(succeeded: true, now: t + UnixMillis(s) * 1_000) }
        r.heartbeat(succeeded: true, now: t + 15_000)
        #expect(r.mayRescue(now: t + 15_000), "5 s apart: still taken as healthy")
        r.heartbeat(succeeded: true, now: t + 40_001)
        #expect(r.healthySince == t + 40_001 && !r.mayRescue(now: t + 41_000))
        #expect(RescueReadiness(nodeTimeoutMillis: 2_000).maxGapMillis == 2_000, "never under two heartbeats' interval")
    }
}

/// Two nodes' housekeeping on one store, on a simulated clock: a database outage longer than the node timeout
/// (shorter than the lease) does not make the live nodes rescue each other, and a real death still is found.
@Suite struct HousekeepingRescueTests {
    let t: UnixMillis = 1_000_000
    let store = MemoryStore()

    func keeper(_ id: String) -> Housekeeping {
        Housekeeping(
            store: store, node: NodeStatus(id: id, name: id, pid: 1, startedAt: t, heartbeatAt: 0), leaseMillis: 60_000,
            nodeTimeoutMillis: 10_000, retentionSeconds: nil, syncPruneAt: nil,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    @Test func anOutageBetweenTheNodeTimeoutAndTheLeaseRescuesNothing() throws {
        let id = RequestID.make(now: t)
        _ = try store.enqueue(
            NewJob(id: id, spec: .hash(input: "x", iterations: 1), input: [:], callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: t),
            backlogLimit: 10, clientLimit: 10, clientStorageLimit: 1 << 30)
        #expect(try store.claim(limit: 1, leaseMillis: 60_000, now: t, owner: "b").count == 1)
        var (a, b) = (keeper("a"), keeper("b"))
        var rescued = 0
        func seconds(_ range: ClosedRange<Int>, _ nodes: [String]) {
            for s in range {
                let now = t + UnixMillis(s) * 1_000
                for n in nodes {
                    let leases = n == "b" ? [id] : []
                    let published = { Housekeeping.Published(inHand: leases.count, circuits: [], stats: DeliveryStats(), leases: leases) }
                    if n == "a" {
                        a.run(now: now, published: published, renewed: { _, _ in }, rescued: { rescued += $0 })
                    } else {
                        b.run(now: now, published: published, renewed: { _, _ in }, rescued: { rescued += $0 })
                    }
                }
            }
        }
        seconds(0...20, ["a", "b"])
        store.unreachable.store(true, ordering: .relaxed)
        seconds(21...50, ["a", "b"])
        store.unreachable.store(false, ordering: .relaxed)
        seconds(51...70, ["a", "b"])
        #expect(rescued == 0, "b was alive all along")
        #expect((store.row(id)?.leaseUntil ?? 0) > t + 70_000, "b's lease stands, renewed")
        seconds(71...79, ["a"])
        #expect(rescued == 0, "b silent for less than the node timeout")
        seconds(80...82, ["a"])
        #expect(rescued == 1, "b dead: its job is due again")
    }
}
