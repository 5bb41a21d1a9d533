import Foundation
import Harness
import Synchronization
import Testing
import WorkEngine

@testable import Store

/// deliveryd's wake-up on PostgreSQL: the commits that make a job due notify, a listener on a connection of its
/// own is woken by any node's (here: another store on the same database, as another node would open it), and
/// it listens again by itself after its connection is ended, with backoff while the database cannot be reached.
@Suite struct PostgresListenerTests {
    /// A listener's wake-ups and events.
    final class Probe: Sendable {
        private let woken = DispatchSemaphore(value: 0)
        private let log = Mutex<[PostgresListener.Event]>([])
        var events: [PostgresListener.Event] { log.withLock { $0 } }

        func wake() { woken.signal() }
        func record(_ event: PostgresListener.Event) { log.withLock { $0.append(event) } }

        /// Whether a wake-up came within `timeout` seconds; takes every one that came.
        func woke(within timeout: Double) -> Bool {
            guard woken.wait(timeout: .now() + timeout) == .success else { return false }
            while woken.wait(timeout: .now()) == .success {}
            return true
        }

        var listeningPIDs: [Int32] {
            events.compactMap { if case .listening(_, let pid) = $0 { pid } else { nil } }
        }
    }

    func listener(_ url: String) -> (PostgresListener, Probe) {
        let probe = Probe()
        return (PostgresListener(url: url, wake: probe.wake, event: probe.record), probe)
    }

    func job(_ now: UnixMillis) -> NewJob {
        NewJob(
            id: RequestID.make(now: now), spec: .hash(input: "x", iterations: 1), input: ["input_data": "x", "callback_url": "http://h.example/"],
            callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: now)
    }

    /// Takes `id` through claim and a last failed attempt, as deliveryd would.
    func fail(_ store: any JobStore, _ id: String, now: UnixMillis) throws {
        #expect(try store.claim(limit: 10, leaseMillis: 30_000, now: now).map(\.id) == [id])
        try store.recordAttempt(
            id: id, attempt: AttemptRecord(n: 1, at: now, durationMs: 1, httpStatus: 500, error: nil, nextAttemptAt: nil),
            outcome: .giveUp(reason: "gave up"))
    }

    @Test func everyCommitThatMakesAJobDueWakesAListenerOnAnotherConnection() throws {
        let fixture = try Fixture(.postgres)
        let (node1, node2) = (try fixture.open(), try fixture.open(deliveryd: true))
        let (listener, probe) = listener(fixture.postgresURL!)
        defer { listener.stop() }
        #expect(probe.woke(within: 10), "once listening: what was committed before is looked for")
        let schema = try #require(fixture.postgresURL?.components(separatedBy: "search_path%3D").last)
        #expect(probe.events.first == .listening(channel: "workfcgi_jobs:\(schema)", backendPID: probe.listeningPIDs.first ?? 0))

        let now = WallClock.nowMillis()
        let first = job(now)
        #expect(try node1.enqueue(first, backlogLimit: 10) == .accepted(id: first.id))
        #expect(probe.woke(within: 10), "an /async commit on another node")

        try fail(node2, first.id, now: now)
        #expect(try node2.redeliver(id: first.id, now: now) == .requeued)
        #expect(probe.woke(within: 10), "a redeliver, from any node")

        try fail(node2, first.id, now: now)
        let bulk = try node1.redeliverFailed(BulkRedeliver(window: (now - 1000)..<(now + 1000), host: nil, limit: 10), now: now)
        #expect(bulk.requeued == [first.id])
        #expect(probe.woke(within: 10), "a bulk redeliver")
        #expect(probe.listeningPIDs.count == 1, "one connection all along: \(probe.events)")
    }

    @Test func aListenerWhoseConnectionIsEndedListensAgainAndStillWakes() throws {
        let fixture = try Fixture(.postgres)
        let node = try fixture.open()
        let (listener, probe) = listener(fixture.postgresURL!)
        defer { listener.stop() }
        #expect(probe.woke(within: 10))
        let pid = try #require(probe.listeningPIDs.first)
        // Its name, for an operator looking at pg_stat_activity.
        #expect(try PostgresCluster.shared().query("SELECT application_name FROM pg_stat_activity WHERE pid = \(pid)") == [PostgresListener.applicationName])

        #expect(try PostgresCluster.shared().query("SELECT pg_terminate_backend(\(pid))") == ["t"])
        #expect(probe.woke(within: 10), "listening again, it wakes the claim loop once")
        let events = probe.events
        #expect(events.contains { if case .lost = $0 { true } else { false } }, "\(events)")
        #expect(probe.listeningPIDs.count == 2 && probe.listeningPIDs.last != pid, "\(events)")

        let j = job(WallClock.nowMillis())
        #expect(try node.enqueue(j, backlogLimit: 10) == .accepted(id: j.id))
        #expect(probe.woke(within: 10), "the new connection is listening")
    }

    @Test func aDatabaseThatCannotBeReachedIsTriedAgainWithGrowingDelays() throws {
        let (listener, probe) = listener("postgresql:///nowhere?host=/nonexistent-\(UUID().uuidString.prefix(8))")
        let deadline = Date().addingTimeInterval(10)
        while probe.events.count < 4 && Date() < deadline { usleep(20_000) }
        listener.stop()
        let delays = probe.events.compactMap { if case .failed(_, let d) = $0 { d } else { nil } }
        #expect(delays.prefix(4) == [0.1, 0.2, 0.4, 0.8], "\(probe.events)")
        #expect(probe.listeningPIDs.isEmpty)
        #expect(!probe.woke(within: 0), "never woken without a connection")
    }

    @Test func theBackoffDoublesToTenSecondsAndStartsOverAfterAConnectionThatHeld() {
        var backoff = ListenBackoff()
        #expect((0..<9).map { _ in backoff.failed() } == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10])
        #expect(backoff.lost(afterSeconds: 2) == 10, "a connection dropped at once is no success")
        #expect(backoff.lost(afterSeconds: 10) == 0.1)
        #expect(backoff.failed() == 0.2)
    }

    @Test func theChannelIsPerSchema() {
        #expect(PostgresNotify.channel(schema: "public") == "workfcgi_jobs")
        #expect(PostgresNotify.channel(schema: nil) == "workfcgi_jobs")
        #expect(PostgresNotify.channel(schema: "tenant_a") == "workfcgi_jobs:tenant_a")
        #expect(PostgresNotify.channel(schema: String(repeating: "s", count: 63)).utf8.count == 63)
        #expect(PostgresNotify.quoted(#"a"b"#) == #""a""b""#)
    }
}
