import Foundation
import Harness
import Testing

/// Bulk recovery (POST /requests/redeliver and /ui's form) and the receiver's `webhook-delivery: abort-message`,
/// against the real stack.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RecoveryTests {
    @Test func aReceiverAbortsRetriesAndFailedJobsAreRecoveredInBulk() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        defer { stack.stopAll() }
        let client = HTTPClient()
        let since = ISO8601DateFormatter().string(from: Date(timeIntervalSinceNow: -60))
        let a = try stack.submit(#"{"text": "a", "callback_url": "http://127.0.0.1:\#(port)/abort/a"}"#)
        try stack.waitForStatus(a, "failed")
        let b = try stack.submit(#"{"text": "b", "callback_url": "http://127.0.0.1:\#(port)/abort/b"}"#)
        try stack.waitForStatus(b, "failed")

        // The schedule had four retries left; the receiver's header stopped them after the first attempt.
        let delivery = try stack.delivery(a)
        #expect((delivery["attempts"] as? [[String: Any]])?.count == 1, "\(delivery)")
        #expect((delivery["error"] as? String ?? "").contains("abort-message"), "\(delivery)")

        // /ui's list says why each failed; its search box opens a request by id.
        let list = try client.get(stack.baseURL + "/ui?status=failed").text
        #expect(list.contains("<td class=reason>receiver answered HTTP 500 with webhook-delivery: abort-message"), "\(list)")
        let search = try client.get(stack.baseURL + "/ui?id=\(a)")
        #expect(search.status == 303 && search.headers["location"] == "/ui/requests/\(a)")
        #expect(try client.get(stack.baseURL + "/ui?id=nope").status == 400)
        #expect(!list.contains("id=older"), "two requests fit one page")

        let url = stack.baseURL + "/requests/redeliver?since=\(since)"
        let otherHost = try client.request("POST", url + "&host=elsewhere.example")
        #expect(otherHost.status == 200 && otherHost.json?["requeued"] as? Int == 0, "\(otherHost.text)")
        let first = try client.request("POST", url + "&host=127.0.0.1&limit=1")
        #expect(first.status == 200, "\(first.text)")
        #expect(first.json?["request_ids"] as? [String] == [a] && first.json?["more"] as? Bool == true, "\(first.text)")
        #expect(await receiver.wait(timeout: 20) { $0.filter { $0.webhookID == a }.count == 2 }, "a sent again, the same webhook-id")

        // /ui's form does the same for the last window; its token is the page's.
        let page = try client.get(stack.baseURL + "/ui").text
        let form = try #require(page.range(of: #"action="/ui/redeliver"><input type=hidden name=token value=""#), "\(page)")
        let token = String(page[form.upperBound...].prefix(64))
        let origin = ["Origin": stack.baseURL, "Content-Type": "application/x-www-form-urlencoded"]
        let forged = try client.request("POST", stack.baseURL + "/ui/redeliver", body: Array("token=abc&window=3600".utf8), headers: origin)
        #expect(forged.status == 403)
        let pressed = try client.request("POST", stack.baseURL + "/ui/redeliver", body: Array("token=\(token)&window=3600&host=".utf8), headers: origin)
        #expect(pressed.status == 303, "\(pressed.text)")
        #expect(pressed.headers["location"]?.hasPrefix("/ui?redelivered=") == true)
        #expect(await receiver.wait(timeout: 20) { $0.filter { $0.webhookID == b }.count == 2 }, "b sent again from the form")
        #expect(try client.get(stack.baseURL + pressed.headers["location"]!).text.contains("queued again"))

        #expect(try client.request("POST", stack.baseURL + "/requests/redeliver").status == 400, "since is required")
        #expect(try client.request("POST", stack.baseURL + "/requests/redeliver?since=yesterday").status == 400)
        #expect(try HTTPClient(sourceAddress: "127.0.0.2").request("POST", url).status == 403, "operators only")
        await receiver.stop()
    }
}
