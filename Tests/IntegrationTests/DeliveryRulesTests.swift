import Foundation
import Harness
import Testing

/// How deliveryd treats receivers: Retry-After, redirects, and proxies in its environment.
@Suite(.serialized, .timeLimit(.minutes(2))) struct DeliveryRulesTests {
    @Test func retryAfterOn503IsHonoured() async throws {
        // The schedule says 200 ms; the receiver says 2 s.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_RETRY_SCHEDULE": "200ms"])
        let id = try stack.submit(#"{"text": "wait", "callback_url": "http://127.0.0.1:\#(port)/status/503/after/2"}"#)
        try stack.waitForStatus(id, "failed", timeout: 20)
        let calls = receiver.calls.filter { $0.webhookID == id }
        #expect(calls.count == 2)
        if calls.count == 2 {
            let gap = calls[1].receivedAt.timeIntervalSince(calls[0].receivedAt)
            #expect(gap >= 1.9, "second attempt came after \(gap) s")
        }
        await receiver.stop()
    }

    @Test func redirectsAreNeverFollowedAndProxiesAreIgnored() async throws {
        // A proxy in deliveryd's environment that goes nowhere: callbacks must not use it.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: [
            "WORKFCGI_RETRY_SCHEDULE": "100ms", "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
        ])
        let direct = try stack.submit(#"{"text": "direct", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(direct, "completed")

        let redirected = try stack.submit(#"{"text": "moved", "callback_url": "http://127.0.0.1:\#(port)/redirect"}"#)
        try stack.waitForStatus(redirected, "failed")
        #expect(receiver.calls.filter { $0.webhookID == redirected }.map(\.path) == ["/redirect", "/redirect"])
        #expect(!receiver.calls.contains { $0.path == "/ok/redirected" })
        #expect(try stack.attemptStatuses(redirected) == [302, 302])
        await receiver.stop()
    }

    /// A host at its concurrency limit: deliveryd holds the other jobs for it in memory and sends each as an
    /// attempt ends, instead of postponing them through the database (which cost a write and a claim each and
    /// capped delivery into one receiver near 1,000/s). Never more than the limit in flight, none postponed.
    @Test func aBusyHostsJobsWaitInMemoryNotInTheDatabase() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: [
            "WORKFCGI_HOST_CONCURRENCY": "2", "WORKFCGI_LOG_LEVEL": "debug", "WORKFCGI_LEASE": "30s",
        ])
        var ids: [String] = []
        for i in 0..<12 {
            ids.append(try stack.submit(#"{"text": "job \#(i)", "callback_url": "http://127.0.0.1:\#(port)/slow/150"}"#))
        }
        for id in ids { try stack.waitForStatus(id, "completed", timeout: 30) }
        let calls = receiver.calls.filter { ids.contains($0.webhookID) }
        #expect(calls.count == 12)
        // Each call was answered 150 ms after it arrived: at no arrival were more than 2 in the receiver.
        let spans = calls.map { ($0.receivedAt.addingTimeInterval(-0.15), $0.receivedAt) }
        let most = spans.map { s in spans.filter { $0.0 <= s.0 && s.0 < $0.1 }.count }.max() ?? 0
        #expect(most <= 2, "\(most) callbacks in flight to one host")
        #expect(!stack.log(.deliveryd).contains("callback postponed"))
        for id in ids { #expect(try stack.attemptStatuses(id) == [200]) }
        await receiver.stop()
    }
}
