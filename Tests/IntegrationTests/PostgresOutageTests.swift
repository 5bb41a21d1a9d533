import Foundation
import Harness
import Testing

/// PostgreSQL stopped under a running stack and started again (issue 19 item 4), on a private cluster so the
/// other suites' shared one is never touched: `pg_ctl stop -m fast` (an operator's stop) and `-m immediate`
/// (a crash, WAL replayed at the next start). While it is down /async answers 503 store_unavailable with
/// Retry-After, never a 202; /healthz says the database is not connected; /sync still answers, its record
/// lost and counted. Once it is back /async is 202 again and deliveryd claims again, neither restarted, and
/// every job acknowledged before the outage (some in flight to the receiver, some between retries) is
/// delivered. The outage outlasts the lease (4 s) of the jobs deliveryd holds.
@Suite(.serialized, .timeLimit(.minutes(3))) struct PostgresOutageTests {
    @Test(arguments: PostgresCluster.StopMode.allCases)
    func databaseDownAndBack(mode: PostgresCluster.StopMode) async throws {
        let cluster = try PostgresCluster.privateCluster()
        defer { cluster.remove() }
        // Durability full: a 202 waits for its WAL flush, so an immediate stop cannot take an acknowledged job.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(
            // The failing jobs below must not open the receiver's circuit (5 failures by default): this test is
            // about the database.
            settings: ["WORKFCGI_DATABASE_URL": cluster.url(), "WORKFCGI_DURABILITY": "full", "WORKFCGI_BREAKER_THRESHOLD": "1000"])
        defer { stack.stopAll() }
        let client = HTTPClient(timeoutSeconds: 10)
        func job(_ path: String) -> String { #"{"text": "\#(path)", "callback_url": "http://127.0.0.1:\#(port)/\#(path)"}"# }

        let warm = try stack.submit(job("ok/warm"))
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == warm } })

        // Acknowledged just before the stop: callbacks the receiver holds for 1.2 s (sent, their attempts recorded
        // only after the outage), callbacks failing three times (retries due during it), and plain ones.
        var before: [String] = []
        for i in 0..<4 { before.append(try stack.submit(job("slow/1200/inflight-\(i)"))) }
        for i in 0..<4 { before.append(try stack.submit(job("fail/3/retry-\(i)"))) }
        for i in 0..<4 { before.append(try stack.submit(job("ok/late-\(i)"))) }
        usleep(300_000)  // deliveryd has claimed them and sent the slow ones

        let stopped = Date()
        try cluster.stop(mode)
        let stopTook = Date().timeIntervalSince(stopped)

        // /healthz notices within a few seconds (its answer is cached for 100 ms).
        var health: HTTPClient.Response?
        try stack.waitFor("/healthz to report the database down", timeout: 5) {
            health = try? client.get(stack.baseURL + "/healthz")
            return health?.status == 503 && health?.json?["db_connected"] as? Bool == false
        }
        let healthTook = Date().timeIntervalSince(stopped)
        #expect(health?.headers["retry-after"] != nil, "\(health?.text ?? "")")
        #expect(health?.json?["status"] as? String != "ok", "\(health?.text ?? "")")

        // Every /async while it is down: 503 store_unavailable with Retry-After, never a 202. For 5 s, past the
        // 4 s lease of the jobs deliveryd holds (their callbacks sent, their attempts not recorded).
        var (refusals, probes) = (0, 0)
        while Date().timeIntervalSince(stopped) < 5 {
            let i = probes
            probes += 1
            let r = try client.postJSON(stack.baseURL + "/async", job("ok/during-\(i)"))
            if r.status == 202 { Issue.record("a 202 while the database was down: \(r.text)") }
            let error = r.json?["error"] as? [String: Any]
            #expect(r.status == 503 && error?["code"] as? String == "store_unavailable", "\(i): \(r.status) \(r.text)")
            #expect(r.headers["retry-after"] == "1", "\(i): \(r.headers)")
            if r.status == 503 { refusals += 1 }
            usleep(100_000)
        }
        #expect(probes >= 10, "probed while down: \(probes)")
        // The records cannot be read either; /sync is computed and answered, its record lost and counted.
        #expect(try client.get(stack.baseURL + "/requests/\(warm)").status == 503)
        let sync = try client.postJSON(stack.baseURL + "/sync", #"{"text": "while down"}"#)
        #expect(sync.status == 200 && sync.json?["status"] as? String == "completed", "\(sync.text)")

        let starting = Date()
        try cluster.start()
        let startTook = Date().timeIntervalSince(starting)
        let restarted = Date()
        // The same processes: no restart of workfcgi or deliveryd.
        var after: String?
        var answers: [String] = []
        try stack.waitFor("/async to answer 202 again", timeout: 10) {
            let r = try? client.postJSON(stack.baseURL + "/async", job("ok/after"))
            answers.append(r.map { "\($0.status) \(($0.json?["error"] as? [String: Any])?["code"] ?? "")" } ?? "no answer")
            after = r?.status == 202 ? r?.json?["request_id"] as? String : nil
            return after != nil
        }
        let acceptTook = Date().timeIntervalSince(restarted)
        try stack.waitFor("/healthz to report the database and deliveryd", timeout: 10) {
            let h = try? client.get(stack.baseURL + "/healthz")
            return h?.status == 200 && (h?.json?["deliveryd"] as? [String: Any])?["running"] as? Bool == true
        }
        let expected = Set(before + [try #require(after)])
        let all = await receiver.wait(timeout: 30) { calls in
            expected.isSubset(of: Set(calls.filter { (200...299).contains($0.answered) }.map(\.webhookID)))
        }
        let delivered = Set(receiver.delivered.map(\.webhookID))
        let missing = expected.subtracting(delivered)
        #expect(all, "acknowledged but never delivered: \(missing.map { ($0, (try? stack.delivery($0)) ?? [:]) })\n\(stack.log(.deliveryd).suffix(3000))")
        // Every attempt made across the outage is recorded: each job's delivery is `delivered` in the database.
        for id in expected {
            try stack.waitFor("\(id)'s delivery recorded", timeout: 15) { (try? stack.delivery(id))?["status"] as? String == "delivered" }
        }
        #expect(stack.isRunning(.workfcgi) && stack.isRunning(.deliveryd), "neither daemon exited")

        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_sync_records_lost_total{reason="store_error"} 1"#), "\(metrics)")
        let duplicates = receiver.delivered.filter { expected.contains($0.webhookID) }.count - expected.count
        print(
            "outage (\(mode)): pg_ctl stop took \(String(format: "%.2f", stopTook)) s, /healthz down after "
                + "\(String(format: "%.2f", healthTook)) s, \(refusals)/\(probes) /async refused 503 while down, pg_ctl start took "
                + "\(String(format: "%.2f", startTook)) s, 202 again \(String(format: "%.2f", acceptTook)) s after it (answers: \(answers)), \(expected.count) acknowledged jobs delivered, "
                + "\(duplicates) duplicate deliveries (same webhook-id)")
        await receiver.stop()
    }
}
