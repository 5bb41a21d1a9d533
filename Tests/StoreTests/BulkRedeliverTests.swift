import Foundation
import Testing
import WorkEngine

@testable import Store

/// `redeliverFailed`: the window, the host, the bound, and a second call that takes nothing twice.
@Suite struct BulkRedeliverTests {
    /// An async job created at `at` for `url`, taken through to `failed` (or delivered when `deliver`).
    func finished(_ store: any JobStore, at: UnixMillis, url: String, deliver: Bool = false) throws -> String {
        let job = NewJob(
            id: RequestID.make(now: at), spec: .hash(input: "x", iterations: 1), input: ["input_data": "x", "callback_url": .string(url)],
            callbackURL: url, idempotencyKey: nil, createdAt: at)
        _ = try store.enqueue(job, backlogLimit: 100)
        _ = try store.claim(limit: 100, leaseMillis: 1000, now: at)
        try store.recordAttempt(
            id: job.id, attempt: AttemptRecord(n: 1, at: at, durationMs: 1, httpStatus: deliver ? 200 : 500, error: nil, nextAttemptAt: nil),
            outcome: deliver ? .delivered : .giveUp(reason: "gave up"))
        return job.id
    }

    @Test(arguments: Backend.allCases) func takesTheWindowsFailedJobsOnceEach(_ backend: Backend) throws {
        try Fixture.with(backend) { store, _ in try takesTheWindowsFailedJobsOnceEach(store) }
    }

    func takesTheWindowsFailedJobsOnceEach(_ store: any JobStore) throws {
        let t: UnixMillis = 1_800_000_000_000
        let before = try finished(store, at: t - 1, url: "http://a.example/")
        let a1 = try finished(store, at: t, url: "http://a.example/x")
        let b = try finished(store, at: t + 10, url: "https://user@B.Example:8443/hook")
        _ = try finished(store, at: t + 20, url: "http://a.example/", deliver: true)
        let a2 = try finished(store, at: t + 30, url: "http://A.EXAMPLE./y")
        let after = try finished(store, at: t + 100, url: "http://a.example/")

        // One host's, a bite of one at a time, oldest first.
        let aOnly = BulkRedeliver(window: t..<(t + 100), host: "a.example", limit: 1)
        #expect(try store.redeliverFailed(aOnly, now: t + 1000) == BulkRedeliverResult(requeued: [a1], more: true))
        #expect(try store.redeliverFailed(aOnly, now: t + 1000) == BulkRedeliverResult(requeued: [a2], more: false))
        #expect(try store.redeliverFailed(aOnly, now: t + 1000) == BulkRedeliverResult(requeued: [], more: false), "idempotent")

        #expect(try store.redeliverFailed(BulkRedeliver(window: t..<(t + 100), host: nil, limit: 100), now: t + 1000).requeued == [b])
        for id in [a1, a2, b] {
            let r = try #require(try store.request(id: id))
            #expect(r.status == .delivering && r.deliveryError == nil)
        }
        for id in [before, after] { #expect(try store.request(id: id)?.status == .failed, "outside the window") }
        // A fresh attempt series, as a single redelivery starts.
        let claimed = try store.claim(limit: 10, leaseMillis: 1000, now: t + 1000)
        #expect(claimed.count == 3 && claimed.allSatisfy { $0.attempts == 1 && $0.attemptBase == 1 })
    }

    @Test func callbackHosts() {
        #expect(CallbackHost.name(of: "https://User:pw@Hooks.Example.com.:8443/x?y#z") == "hooks.example.com")
        #expect(CallbackHost.name(of: "http://[::1]:80/") == "::1")
        #expect(CallbackHost.name(of: "http://10.0.0.1") == "10.0.0.1")
        #expect(CallbackHost.name(of: "not a url") == nil)
        #expect(BulkRedeliver(window: 0..<1, host: "[::1]", limit: 5_000).host == "::1")
        #expect(BulkRedeliver(window: 0..<1, host: nil, limit: 5_000).limit == BulkRedeliver.maxLimit)
    }

    /// A call reads about `limit` rows a page at a time, never the whole window: 1,200 failures for another
    /// host, then 3 for the one asked for, with limit 2 → two taken, more, and reading stopped at the third.
    @Test func takeReadsPagesAndStopsPastTheLimit() {
        let rows: [BulkRedeliver.Candidate] = (0..<1203).map { i in
            (String(format: "%06d", i), 10, i < 1200 ? "http://other.example/x" : "https://Hooks.Example:8443/y")
        }
        let selection = BulkRedeliver(window: 0..<100, host: "hooks.example", limit: 2)
        #expect(selection.likePattern == "%hooks.example%")
        var reads: [String] = []
        let taken = selection.take { after, count in
            reads.append(after)
            return Array(rows.filter { $0.id > after }.prefix(count))
        }
        #expect(taken == BulkRedeliverResult(requeued: ["001200", "001201"], more: true))
        #expect(reads == ["", "000499", "000999"], "three pages, from the window's start")
        let all = BulkRedeliver(window: 0..<100, host: nil, limit: 1000).take { after, count in Array(rows.filter { $0.id > after }.prefix(count)) }
        #expect(all.requeued.count == 1000 && all.more)
        let none = BulkRedeliver(window: 0..<100, host: "nowhere.example", limit: 10).take { after, count in Array(rows.filter { $0.id > after }.prefix(count)) }
        #expect(none == BulkRedeliverResult(requeued: [], more: false))
    }
}
