import Foundation
import Harness
import Testing

/// Operator endpoints, redelivery, circuit breakers, and the SSRF policy with private addresses refused.
@Suite(.serialized, .timeLimit(.minutes(2))) struct OperatorTests {
    @Test func operatorEndpointsAreLoopbackOnlyButJobsStayFollowable() throws {
        let stack = try Stack()
        try stack.start()
        let local = HTTPClient()
        let other = HTTPClient(sourceAddress: "127.0.0.2")  // not in nginx/operators.conf
        let id = try #require(try local.postJSON(stack.baseURL + "/sync", #"{"text": "x"}"#).json?["request_id"] as? String)
        #expect(try local.get(stack.baseURL + "/requests").status == 200)
        let listing = try other.get(stack.baseURL + "/requests")
        #expect(listing.status == 403)
        #expect((listing.json?["error"] as? [String: Any])?["code"] as? String == "forbidden")
        #expect(try other.request("POST", stack.baseURL + "/requests/\(id)/redeliver").status == 403)
        #expect(try other.get(stack.baseURL + "/requests/\(id)").status == 200, "a client can follow its own job")
        #expect(try other.get(stack.baseURL + "/metrics").status == 403)

        let metrics = try local.get(stack.baseURL + "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(metrics.text.contains(#"workfcgi_http_responses_total{route="sync",status="200"} 1"#), "\(metrics.text)")
        #expect(metrics.text.contains(#"workfcgi_requests{mode="sync",status="completed"} 1"#))
        #expect(metrics.text.contains("workfcgi_sync_duration_seconds_count 1"))
        #expect(metrics.text.contains("workfcgi_database_up 1"))
    }

    @Test func redeliverSendsTheSameWebhookAgain() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        let client = HTTPClient()
        let id = try stack.submit(#"{"text": "again", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(id, "completed")

        let redeliver = try client.request("POST", stack.baseURL + "/requests/\(id)/redeliver")
        #expect(redeliver.status == 202, "\(redeliver.text)")
        #expect(await receiver.wait(timeout: 20) { $0.filter { $0.webhookID == id }.count == 2 })
        let bodies = receiver.calls.filter { $0.webhookID == id }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.body)) as? [String: Any])?["result"] as? [String: Any]
        }
        #expect(bodies.count == 2 && bodies[0]["input_hash"] as? String == bodies[1]["input_hash"] as? String)
        try stack.waitForStatus(id, "completed")
        #expect((try stack.delivery(id)["attempts"] as? [[String: Any]])?.map { $0["n"] as? Int } == [1, 2])

        let pending = try stack.submit(#"{"records": 300, "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        let early = try client.request("POST", stack.baseURL + "/requests/\(pending)/redeliver")
        #expect(early.status == 409)
        #expect(try client.request("POST", stack.baseURL + "/requests/01a21618-28c3-7fb4-a704-19a00cf1c59d/redeliver").status == 404)
        await receiver.stop()
    }

    @Test func aFailingReceiverOpensItsCircuitWithoutStallingOthers() async throws {
        let stack = try Stack(settings: [
            "WORKFCGI_BREAKER_THRESHOLD": "2", "WORKFCGI_BREAKER_COOLDOWN": "30s", "WORKFCGI_RETRY_SCHEDULE": "100ms,100ms,100ms,100ms,100ms",
        ])
        try stack.start()
        let failing = try CallbackReceiver()
        let failingPort = try await failing.start()
        let healthy = try CallbackReceiver()
        let healthyPort = try await healthy.start()
        let client = HTTPClient()
        for i in 0..<6 {
            _ = try client.postJSON(stack.baseURL + "/async", #"{"text": "f\#(i)", "callback_url": "http://127.0.0.1:\#(failingPort)/status/500"}"#)
        }
        try stack.waitFor("circuit open in /healthz") {
            let circuits = ((try? client.get(stack.baseURL + "/healthz"))?.json?["deliveryd"] as? [String: Any])?["circuits"] as? [[String: Any]]
            return circuits?.contains { $0["host"] as? String == "127.0.0.1:\(failingPort)" && $0["state"] as? String == "open" } == true
        }
        var ids: [String] = []
        for i in 0..<6 {
            let r = try client.postJSON(stack.baseURL + "/async", #"{"text": "h\#(i)", "callback_url": "http://127.0.0.1:\#(healthyPort)/ok"}"#)
            ids.append(try #require(r.json?["request_id"] as? String))
        }
        let expected = Set(ids)
        #expect(await healthy.wait(timeout: 10) { calls in Set(calls.map(\.webhookID)).isSuperset(of: expected) })
        // While open, the dead host gets no more attempts: threshold failures plus those already in flight.
        let attemptsAtFailingHost = failing.calls.count
        try await Task.sleep(for: .milliseconds(800))
        #expect(failing.calls.count == attemptsAtFailingHost)
        #expect(attemptsAtFailingHost <= 2 + 4, "\(attemptsAtFailingHost) attempts reached the failing host")
        // A restart does not forget the open circuit: the new deliveryd reads it back from the last heartbeat
        // and sends the dead host nothing before its cooldown ends.
        #expect(stack.stop(.deliveryd) == 0)
        try stack.start([.deliveryd])
        try stack.waitFor("circuit open again in /healthz after the restart") {
            let circuits = ((try? client.get(stack.baseURL + "/healthz"))?.json?["deliveryd"] as? [String: Any])?["circuits"] as? [[String: Any]]
            return circuits?.contains { $0["host"] as? String == "127.0.0.1:\(failingPort)" && $0["state"] as? String == "open" } == true
        }
        try await Task.sleep(for: .milliseconds(800))
        #expect(failing.calls.count == attemptsAtFailingHost, "the restarted deliveryd sent to the open circuit's host")
        await failing.stop()
        await healthy.stop()
    }

    /// A name that /etc/hosts maps to loopback, other than the always-refused `localhost`.
    static let loopbackName: String? = {
        guard let hosts = try? String(contentsOfFile: "/etc/hosts", encoding: .utf8) else { return nil }
        for line in hosts.split(separator: "\n") where line.hasPrefix("127.") {
            let names = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().map(String.init)
            if let name = names.first(where: { !$0.hasPrefix("localhost") && !$0.hasPrefix("#") && $0.contains { $0.isLetter } }) { return name }
        }
        return nil
    }()

    /// Literal private addresses and internal names are refused at accept (422). A name is not looked up
    /// there (a slow name server would hold a request thread others share): one that /etc/hosts maps to
    /// loopback is accepted, and deliveryd, resolving it before each attempt, refuses to connect: every
    /// attempt records why, retried on the schedule, then the job is failed. Nothing is ever sent.
    @Test(.enabled(if: loopbackName != nil, "/etc/hosts maps no extra name to loopback"))
    func namesResolvingToLoopbackAreNeverReached() throws {
        let stack = try Stack(settings: ["WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "false", "WORKFCGI_CALLBACK_PORTS": "80,443,8000-9999"])
        try stack.start()
        let client = HTTPClient()
        let name = try #require(Self.loopbackName)
        for url in ["http://127.0.0.1:9100/cb", "http://localhost:9100/cb", "http://[::1]:9100/", "http://[::ffff:0:127.0.0.1]:9100/"] {
            let r = try client.postJSON(stack.baseURL + "/async", #"{"text": "x", "callback_url": "\#(url)"}"#)
            #expect(r.status == 422, "\(url): \(r.text)")
            #expect((r.json?["error"] as? [String: Any])?["code"] as? String == "invalid_callback_url")
        }
        let message = ((try client.postJSON(stack.baseURL + "/async", #"{"text": "x", "callback_url": "http://127.0.0.1:9100/"}"#)
            .json?["error"] as? [String: Any])?["message"] as? String) ?? ""
        #expect(message.contains("127.0.0.1"), "refused for its address: \(message)")
        #expect(message.contains("WORKFCGI_ALLOW_PRIVATE_CALLBACKS"), "the refusal names the setting that allows it")

        let id = try stack.submit(#"{"text": "x", "callback_url": "http://\#(name):9100/cb"}"#)
        try stack.waitForStatus(id, "failed", timeout: 20)
        let attempts = try stack.delivery(id)["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.count == 5, "retried on the schedule (4 retries): \(attempts)")
        for attempt in attempts {
            let error = attempt["error"] as? String ?? ""
            #expect(error.contains("resolves to 127.") && error.contains("private or reserved"), "\(error)")
            #expect(attempt["http_status"] is NSNull, "nothing was sent")
        }
    }

    /// deliveryd's side in /metrics: attempts by outcome, time from commit to callback, claim lag, the build,
    /// and deliveryd shown down within 2 s of a clean stop.
    @Test func metricsShowDeliveryAndTheBuild() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_RETRY_SCHEDULE": "100ms"])
        let client = HTTPClient()
        let delivered = try stack.submit(#"{"text": "a", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        let retried = try stack.submit(#"{"text": "b", "callback_url": "http://127.0.0.1:\#(port)/status/500"}"#)
        try stack.waitForStatus(delivered, "completed")
        try stack.waitForStatus(retried, "failed")
        // The one node's series, its node label dropped.
        func metrics() throws -> String {
            try client.get(stack.baseURL + "/metrics").text.replacingOccurrences(of: #"\{node="[^"]*"\}"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: #"node="[^"]*","#, with: "", options: .regularExpression)
        }
        // Published with deliveryd's next heartbeat (every second).
        try stack.waitFor("delivery counters in /metrics", timeout: 5) {
            ((try? metrics()) ?? "").contains(#"workfcgi_delivery_attempts_total{outcome="gave_up"} 1"#)
        }
        let text = try metrics()
        #expect(text.contains(#"workfcgi_delivery_attempts_total{outcome="delivered"} 1"#), "\(text)")
        #expect(text.contains(#"workfcgi_delivery_attempts_total{outcome="retry"} 1"#))
        #expect(text.contains("workfcgi_delivery_commit_to_callback_seconds_count 1"))
        #expect(text.contains(#"workfcgi_delivery_commit_to_callback_seconds_bucket{le="+Inf"} 1"#))
        #expect(text.contains("workfcgi_delivery_claim_lag_seconds_count 3"), "two first attempts and one retry")
        #expect(text.contains("# TYPE workfcgi_delivery_commit_to_callback_seconds histogram"))
        let build = try #require(text.split(separator: "\n").first { $0.hasPrefix("workfcgi_build_info{") })
        #expect(build.contains(#"version="0.3.0""#) && build.contains("revision=") && !build.contains(#"revision="unknown""#), "\(build)")
        #expect(text.contains("workfcgi_deliveryd_up 1") && text.contains("workfcgi_deliveryd_node_up 1"))
        #expect(text.contains(#"workfcgi_deliveryd_nodes{state="alive"} 1"#))

        #expect(stack.stop(.deliveryd) == 0)
        #expect(!FileManager.default.fileExists(atPath: stack.runDirectory + "/deliveryd.sock"), "a clean exit removes the doorbell")
        let t0 = Date()
        try stack.waitFor("deliveryd shown down", timeout: 2) { ((try? metrics()) ?? "").contains("workfcgi_deliveryd_up 0") }
        #expect(Date().timeIntervalSince(t0) < 2)
        // After a clean stop the heartbeat's age and the circuits are unknown (null), not 57 years and none.
        try stack.waitFor("/healthz shows deliveryd down", timeout: 2) {
            ((try? client.get(stack.baseURL + "/healthz").json)?["deliveryd"] as? [String: Any])?["running"] as? Bool == false
        }
        let daemon = try #require(try client.get(stack.baseURL + "/healthz").json?["deliveryd"] as? [String: Any])
        #expect(daemon["heartbeat_age_ms"] is NSNull && daemon["open_circuits"] is NSNull && daemon["circuits"] is NSNull, "\(daemon)")
        let page = try client.get(stack.baseURL + "/ui").text
        #expect(page.contains("unknown (deliveryd down)") && !page.contains("<b class=ok>0</b>open circuits"), "\(page)")
        await receiver.stop()
    }
}
