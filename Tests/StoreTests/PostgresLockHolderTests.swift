import Dispatch
import Foundation
import Harness
import Synchronization
import Testing
import WorkEngine

@testable import Store

/// Every node's /async batch holds the counters row until its commit, so a node that froze (SIGSTOP, a VM
/// paused) or vanished (power, network) inside a batch would stop every other node's /async: these prove how
/// long, on the real server.
@Suite struct PostgresLockHolderTests {
    func job(_ n: Int) -> NewJob {
        let now = WallClock.nowMillis()
        return NewJob(
            id: RequestID.make(now: now), spec: .hash(input: "x\(n)", iterations: 1), input: ["input_data": .string("x\(n)"), "callback_url": "http://h.example/"],
            callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: now)
    }

    /// A node with the store's own session settings takes the counters row and then does nothing more, as a
    /// frozen one: the server ends its transaction after 5 s and another node's enqueue goes through. Before
    /// (no idle_in_transaction_session_timeout): the enqueue failed after the 30 s statement timeout, and went on
    /// failing for as long as the frozen node lived.
    @Test func aNodeFrozenInsideABatchHoldsTheCountersRowSecondsNotForever() throws {
        let fixture = try Fixture(.postgres)
        let store = try fixture.open()
        let frozen = try PostgresConnection(url: fixture.postgresURL!, sessionSettings: PostgresStore.sessionSettings(.full))
        try frozen.execute("BEGIN")
        try frozen.query("SELECT 1 FROM counters WHERE id = 1 FOR UPDATE")
        let started = Date()
        let j = job(0)
        #expect(try store.enqueue(j, backlogLimit: 10) == .accepted(id: j.id))
        let waited = Date().timeIntervalSince(started)
        #expect(waited > 3, "it did wait for the frozen node's lock: \(waited) s")
        #expect(waited < 9, "and the server ended that node's transaction after 5 s idle: \(waited) s")
        #expect(throws: (any Error).self, "the frozen node's transaction is gone") { try frozen.query("SELECT 1") }
    }

    /// A lock held past lock_timeout (10 s) by a transaction that is busy, not idle: each waiting batch fails
    /// at its timeout, every write in it at once. Before: the batch waited out the 30 s statement timeout and
    /// then tried each of its writes alone, another 30 s each, so the k-th request of a batch was answered
    /// (503) after (k+1) x 30 s.
    @Test func aBatchStuckBehindALockFailsAllAtOnce() throws {
        let fixture = try Fixture(.postgres)
        let store = try fixture.open()
        let holder = try PostgresConnection(url: fixture.postgresURL!)
        let pid = try #require(try holder.query("SELECT pg_backend_pid()").first?.int(0))
        let locked = DispatchSemaphore(value: 0)
        let holderDone = DispatchSemaphore(value: 0)
        Thread {
            _ = try? holder.transaction {
                try holder.query("SELECT 1 FROM counters WHERE id = 1 FOR UPDATE")
                locked.signal()
                try holder.query("SELECT pg_sleep(60)")  // busy, so idle_in_transaction_session_timeout does not end it
            }
            holderDone.signal()
        }.start()
        locked.wait()
        // One enqueue opens a batch that waits on the lock; seven more queue behind it and go as one batch.
        let started = Date()
        let results = Mutex<[(Bool, TimeInterval)]>([])
        Thread {
            let failed = (try? store.enqueue(job(0), backlogLimit: 100)) == nil
            results.withLock { $0.append((failed, Date().timeIntervalSince(started))) }
        }.start()
        Thread.sleep(forTimeInterval: 0.5)
        // Threads of their own (concurrentPerform would run only as many at once as there are cores).
        for i in 1...7 {
            Thread {
                let failed = (try? store.enqueue(job(i), backlogLimit: 100)) == nil
                results.withLock { $0.append((failed, Date().timeIntervalSince(started))) }
            }.start()
        }
        while results.withLock({ $0.count }) < 8 { Thread.sleep(forTimeInterval: 0.1) }
        let all = results.withLock { $0 }
        #expect(all.allSatisfy { $0.0 }, "every write failed while the lock was held: \(all)")
        let last = all.map { $0.1 }.max() ?? 0
        #expect(last < 25, "two batches, one lock timeout each (10 s), not one per write: the last answered after \(last) s: \(all)")
        // Ends the holder's sleep; then writes go through again.
        let admin = try PostgresConnection(url: fixture.postgresURL!)
        try admin.query("SELECT pg_cancel_backend($1::int)", [.int(pid)])
        holderDone.wait()
        let j = job(9)
        #expect(try store.enqueue(j, backlogLimit: 100) == .accepted(id: j.id))
    }
}
