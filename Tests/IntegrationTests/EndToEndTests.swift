import Delivery
import Foundation
import Harness
import Testing

/// The whole stack, for real: nginx → workfcgi → SQLite → deliveryd → a callback receiver, all on loopback.
@Suite(.serialized, .timeLimit(.minutes(2))) struct EndToEndTests {
    @Test func syncComputesInlineAndIsRecorded() throws {
        let stack = try Stack()
        try stack.start()
        let client = HTTPClient()
        let response = try client.postJSON(stack.baseURL + "/sync", #"{"input_data": "hello", "iterations": 2}"#)
        #expect(response.status == 200)
        let json = try #require(response.json)
        #expect(json["status"] as? String == "completed")
        #expect(json["op"] as? String == "hash")
        #expect((json["result"] as? [String: Any])?["hash"] as? String == "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50")
        let id = try #require(json["request_id"] as? String)

        let record = try stack.record(id)
        #expect(record["mode"] as? String == "sync")
        #expect(record["status"] as? String == "completed")
        let listing = try #require(try client.get(stack.baseURL + "/requests?mode=sync").json)
        #expect((listing["requests"] as? [[String: Any]])?.first?["request_id"] as? String == id)
    }

    @Test func asyncAcknowledgesThenDeliversASignedCallback() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        let client = HTTPClient()

        let response = try client.postJSON(
            stack.baseURL + "/async", #"{"text": "Hello world", "count": 3, "callback_url": "http://127.0.0.1:\#(port)/ok/a"}"#)
        #expect(response.status == 202)
        let id = try #require(response.json?["request_id"] as? String)
        #expect(response.json?["status"] as? String == "pending")
        #expect(response.headers["location"] == "/requests/\(id)")

        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } })
        let call = try #require(receiver.calls.first { $0.webhookID == id })
        let body = try #require(try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any])
        #expect(body["request_id"] as? String == id)
        #expect(body["status"] as? String == "completed")
        #expect((body["result"] as? [String: Any])?["processed_text"] as? String == "WORLD HELLO WORLD HELLO WORLD HELLO")
        let signer = try WebhookSigner(secrets: [Stack.secret])
        let timestamp = try #require(Int(call.timestamp))
        #expect(signer.verify(id: id, timestamp: timestamp, body: call.body, header: call.signature, now: Int(Date().timeIntervalSince1970)))

        // The trace shows the one successful attempt.
        try stack.waitForStatus(id, "completed")
        #expect(try stack.delivery(id)["status"] as? String == "delivered")
        #expect(try stack.attemptStatuses(id) == [200])
        await receiver.stop()
    }

    @Test func retriesUntilTheReceiverRecovers() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        let client = HTTPClient()
        let response = try client.postJSON(
            stack.baseURL + "/async", #"{"input_data": "r", "iterations": 10, "callback_url": "http://127.0.0.1:\#(port)/fail/2/x"}"#)
        let id = try #require(response.json?["request_id"] as? String)

        #expect(await receiver.wait(timeout: 20) { calls in calls.contains { $0.webhookID == id && $0.answered == 200 } })
        let calls = receiver.calls.filter { $0.webhookID == id }
        #expect(calls.map(\.answered) == [500, 500, 200])
        #expect(Set(calls.map(\.webhookID)).count == 1, "every attempt carries the same webhook-id")

        try stack.waitFor("trace") { (try? stack.delivery(id))?["status"] as? String == "delivered" }
        #expect(try stack.attemptStatuses(id) == [500, 500, 200])
        let first = (try stack.delivery(id)["attempts"] as? [[String: Any]])?.first
        #expect(first?["next_attempt_at"] is String, "a failed attempt records when the next one is due")
        await receiver.stop()
    }

    @Test func goneStopsRetryingAndEndingFailed() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        let id = try stack.submit(#"{"text": "x", "callback_url": "http://127.0.0.1:\#(port)/status/410"}"#)
        try stack.waitForStatus(id, "failed")
        #expect((try stack.delivery(id)["error"] as? String)?.contains("410") == true)
        #expect(try stack.attemptStatuses(id) == [410])
        #expect(receiver.calls.count == 1, "\(stack.log(.deliveryd))\n\(receiver.calls.map(\.webhookID))")
        await receiver.stop()
    }

    @Test func killedDaemonsJobIsTakenAgainAfterItsLease() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        // 200 records = 2 s of simulated I/O: long enough to kill deliveryd in the middle of it.
        let id = try stack.submit(#"{"records": 200, "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(id, "processing")
        stack.crash(.deliveryd)
        try stack.launch(.deliveryd)
        #expect(await receiver.wait(timeout: 30) { $0.contains { $0.webhookID == id } })
        #expect(receiver.calls.filter { $0.webhookID == id }.count == 1)
        await receiver.stop()
    }

    @Test func restartedDaemonTakesBackItsPredecessorsLeaseAtOnce() async throws {
        // A 60 s lease: without the take-back the job would wait a minute after the crash.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_LEASE": "60s"])
        let id = try stack.submit(#"{"records": 200, "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(id, "processing")
        stack.crash(.deliveryd)
        let restarted = Date()
        try stack.launch(.deliveryd)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } }, "\(stack.log(.deliveryd).suffix(800))")
        #expect(Date().timeIntervalSince(restarted) < 15, "delivered long before the 60 s lease ran out")
        // SQLite: its instance lock proves the predecessor gone. PostgreSQL: another start of the same name may
        // be alive elsewhere, so the jobs wait for the predecessor's node timeout (10 s) and are rescued.
        #expect(stack.log(.deliveryd).contains(Stack.onPostgres ? "rescued the jobs of a dead deliveryd node" : "took back the leases"))
        await receiver.stop()
    }

    @Test func lostDoorbellOnlyDelaysUntilThePoll() async throws {
        // workfcgi accepts while deliveryd is down (the ring goes nowhere); deliveryd finds the job on start.
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let id = try stack.submit(#"{"text": "late", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.start([.deliveryd])
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } })
        await receiver.stop()
    }
}
