import Foundation
import Harness
import Synchronization
import Testing

/// Storm behaviour: nginx's 429, the backlog's 503, sync saturation, and /sync kept apart from the rest.
@Suite(.serialized, .timeLimit(.minutes(2))) struct OverloadTests {
    @Test func nginxAnswers429WithRetryAfterAndJSON() throws {
        let stack = try Stack(rate: "5r/s", burst: 5)
        try stack.start()
        // An address of its own: start-up's health checks (from 127.0.0.1) have not drawn on its bucket.
        let client = HTTPClient(sourceAddress: "127.0.0.3")
        var statuses: [Int] = []
        var limited: HTTPClient.Response?
        for _ in 0..<30 {
            let r = try client.get(stack.baseURL + "/healthz")
            statuses.append(r.status)
            if r.status == 429 { limited = r }
        }
        #expect(statuses.filter { $0 == 200 }.count >= 5)
        let r = try #require(limited, "no 429 in \(statuses)")
        #expect(r.headers["retry-after"] == "1")
        #expect(r.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect((r.json?["error"] as? [String: Any])?["code"] as? String == "rate_limited")
        // Another client address has its own bucket.
        let other = HTTPClient(sourceAddress: "127.0.0.2")
        #expect(try other.get("http://127.0.0.1:\(stack.port)/healthz").status == 200)
    }

    @Test func fullBacklogAnswers503() throws {
        let stack = try Stack(settings: ["WORKFCGI_BACKLOG_LIMIT": "3"])
        try stack.start([.workfcgi, .nginx])  // no deliveryd: nothing drains the queue
        let client = HTTPClient()
        let body = #"{"text": "x", "callback_url": "http://127.0.0.1:9/none"}"#
        for _ in 0..<3 { #expect(try client.postJSON(stack.baseURL + "/async", body).status == 202) }
        let refused = try client.postJSON(stack.baseURL + "/async", body)
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "5")
        #expect((refused.json?["error"] as? [String: Any])?["code"] as? String == "backlog_full")
        let health = try #require(try client.get(stack.baseURL + "/healthz").json)
        #expect(health["queue_depth"] as? Int == 3)
    }

    @Test func saturatedSyncAnswers503AndDoesNotDelayTheAPI() throws {
        let stack = try Stack(settings: ["WORKFCGI_SYNC_CONCURRENCY": "1", "WORKFCGI_SYNC_WAIT": "300ms"])
        try stack.start()
        let statuses = Mutex<[Int]>([])
        let group = DispatchGroup()
        for _ in 0..<6 {
            group.enter()
            Thread {
                let client = HTTPClient()
                // Complexity 4: about 0.4 s each, one at a time.
                if let r = try? client.postJSON(stack.baseURL + "/sync", #"{"payload": {"operation": "hash", "complexity": 4}}"#) {
                    statuses.withLock { $0.append(r.status) }
                    if r.status == 503 {
                        #expect(r.headers["retry-after"] == "1")
                        #expect((r.json?["error"] as? [String: Any])?["code"] as? String == "sync_saturated")
                    }
                }
                group.leave()
            }.start()
        }
        // While sync is saturated, the API pool still answers at once.
        let probe = HTTPClient()
        try stack.waitFor("a sync computation in flight", timeout: 10) {
            ((try? probe.get(stack.baseURL + "/healthz"))?.json?["sync_in_flight"] as? Int) == 1
        }
        let t0 = Date()
        let health = try probe.get(stack.baseURL + "/healthz")
        #expect(health.status == 200)
        #expect(Date().timeIntervalSince(t0) < 1.0)
        group.wait()
        let all = statuses.withLock { $0 }
        #expect(all.count == 6)
        #expect(all.contains(200) && all.contains(503), "\(all)")
    }

    @Test func oneClientsBacklogIsBoundedWithoutRefusingOthers() throws {
        let stack = try Stack(settings: ["WORKFCGI_CLIENT_BACKLOG_LIMIT": "3"])
        try stack.start([.workfcgi, .nginx])  // no deliveryd: jobs stay unfinished
        let body = #"{"text": "x", "callback_url": "http://127.0.0.1:9/x"}"#
        let first = HTTPClient()
        for _ in 0..<3 { #expect(try first.postJSON(stack.baseURL + "/async", body).status == 202) }
        let refused = try first.postJSON(stack.baseURL + "/async", body)
        #expect(refused.status == 503)
        #expect((refused.json?["error"] as? [String: Any])?["code"] as? String == "client_backlog_full", "\(refused.text)")
        #expect(refused.headers["retry-after"] != nil)
        #expect(try HTTPClient(sourceAddress: "127.0.0.2").postJSON(stack.baseURL + "/async", body).status == 202)
    }

    /// The isolation mechanism itself: threads that compute run niced, threads that answer do not; and with
    /// every sync slot and every deliveryd worker busy with long jobs, /async and /healthz still answer.
    @Test func computeRunsNicedAndAsyncAnswersWhileEverythingComputes() throws {
        let stack = try Stack(settings: ["WORKFCGI_SYNC_CONCURRENCY": "2", "WORKFCGI_WORKERS": "2", "WORKFCGI_SYNC_WAIT": "10s"])
        try stack.start()
        try stack.waitFor("workfcgi's pools") {
            let names = stack.threads(.workfcgi).map(\.name)
            return names.filter { $0.hasPrefix("sync-") }.count == 32 && names.filter { $0.hasPrefix("api-") }.count == 8
        }
        let workfcgi = stack.threads(.workfcgi)
        let sync = workfcgi.filter { $0.name.hasPrefix("sync-") }
        let api = workfcgi.filter { $0.name.hasPrefix("api-") }
        #expect(!sync.isEmpty && sync.allSatisfy { $0.nice == 10 && $0.policy == 5 }, "\(sync)")
        #expect(!api.isEmpty && api.allSatisfy { $0.nice == 0 && $0.policy == 0 }, "\(api)")
        #expect(workfcgi.contains { $0.name == "group-commit" && $0.nice == 0 }, "\(workfcgi)")
        // deliveryd names its threads as it starts them, just after its doorbell socket appears.
        try stack.waitFor("deliveryd's threads") { stack.threads(.deliveryd).contains { $0.name == "callbacks" } }
        try stack.waitFor("deliveryd's workers: \(stack.threads(.deliveryd))") { stack.threads(.deliveryd).filter { $0.name.hasPrefix("worker-") }.count == 2 }
        let deliveryd = stack.threads(.deliveryd)
        let workers = deliveryd.filter { $0.name.hasPrefix("worker-") }
        #expect(workers.count == 2 && workers.allSatisfy { $0.nice == 10 && $0.policy == 5 }, "\(deliveryd)")
        #expect(deliveryd.contains { $0.name == "callbacks" && $0.nice == 0 }, "\(deliveryd)")

        // Fill every slot: 2 sync computations and 2 deliveryd workers on multi-second jobs.
        let heavy = #"{"payload": {"operation": "prime", "complexity": 8}, "callback_url": "http://127.0.0.1:9/x"}"#
        for _ in 0..<2 { _ = try stack.submit(heavy) }
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread {
                _ = try? HTTPClient(timeoutSeconds: 60).postJSON(stack.baseURL + "/sync", #"{"payload": {"operation": "prime", "complexity": 8}}"#)
                group.leave()
            }.start()
        }
        let probe = HTTPClient(timeoutSeconds: 10)
        try stack.waitFor("every sync slot and deliveryd worker busy", timeout: 20) {
            let h = (try? probe.get(stack.baseURL + "/healthz"))?.json
            return h?["sync_in_flight"] as? Int == 2 && h?["active_workers"] as? Int == 2
        }
        let accepted = try probe.postJSON(stack.baseURL + "/async", #"{"text": "still answering", "callback_url": "http://127.0.0.1:9/x"}"#)
        #expect(accepted.status == 202)
        #expect(try probe.get(stack.baseURL + "/healthz").status == 200)
        group.wait()
    }
}
