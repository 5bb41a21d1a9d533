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
}
