import Digest
import Store
import Foundation
import Testing

@testable import Delivery

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy(schedule: [1, 2, 4, 8], jitter: 0.25)

    @Test func scheduleWithJitterBounds() {
        let failure = AttemptResult(httpStatus: 500, error: "HTTP 500")
        for (attempt, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)] {
            #expect(policy.decide(attempt: attempt, result: failure, random: 0.5, now: 0) == .retry(at: ms(base)))
            #expect(policy.decide(attempt: attempt, result: failure, random: 0, now: 0) == .retry(at: ms(base * 0.75)))
            #expect(policy.decide(attempt: attempt, result: failure, random: 1, now: 0) == .retry(at: ms(base * 1.25)))
        }
        guard case .giveUp(let reason) = policy.decide(attempt: 5, result: failure, random: 0.5, now: 0) else {
            Issue.record("5th failure must give up")
            return
        }
        #expect(reason.contains("5 attempts") && reason.contains("HTTP 500"))
        #expect(policy.maxAttempts == 5)
    }

    @Test func statusRules() {
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 204, error: nil), random: 0.5, now: 0) == .delivered)
        #expect(policy.decide(attempt: 4, result: AttemptResult(httpStatus: 200, error: nil), random: 0.5, now: 0) == .delivered)
        if case .giveUp = policy.decide(attempt: 1, result: AttemptResult(httpStatus: 410, error: "HTTP 410"), random: 0.5, now: 0) {} else {
            Issue.record("410 must stop retrying")
        }
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 302, error: "HTTP 302"), random: 0.5, now: 0) == .retry(at: ms(1)))
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: nil, error: "timeout"), random: 0.5, now: 0) == .retry(at: ms(1)))
        // Retry-After is honoured on 429/503 when longer than the schedule, and capped.
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 429, error: nil, retryAfterSeconds: 30), random: 0.5, now: 0) == .retry(at: ms(30)))
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 503, error: nil, retryAfterSeconds: 0), random: 0.5, now: 0) == .retry(at: ms(1)))
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 503, error: nil, retryAfterSeconds: 1e9), random: 0.5, now: 0) == .retry(at: ms(3600)))
        #expect(policy.decide(attempt: 1, result: AttemptResult(httpStatus: 500, error: nil, retryAfterSeconds: 30), random: 0.5, now: 0) == .retry(at: ms(1)))
        let once = RetryPolicy(schedule: [], jitter: 0)
        if case .giveUp = once.decide(attempt: 1, result: AttemptResult(httpStatus: 500, error: nil), random: 0.5, now: 0) {} else {
            Issue.record("an empty schedule means one attempt")
        }
    }
}

@Suite struct WebhookSignerTests {
    /// The test vector published with the Standard Webhooks specification.
    @Test func standardWebhooksVector() throws {
        let signer = try WebhookSigner(secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        let body = Array(#"{"test": 2432232314}"#.utf8)
        let signature = signer.signature(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(signer.verify(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, header: signature, now: 1_614_265_330))
    }

    @Test func verifyRejectsTamperingSkewAndForeignSecrets() throws {
        let signer = try WebhookSigner(secrets: [WebhookSigner.generateSecret()])
        let other = try WebhookSigner(secrets: [WebhookSigner.generateSecret()])
        let body = Array("{}".utf8)
        let header = signer.signature(id: "id1", timestamp: 1000, body: body)
        #expect(signer.verify(id: "id1", timestamp: 1000, body: body, header: header, now: 1299))
        #expect(!signer.verify(id: "id1", timestamp: 1000, body: body, header: header, now: 1301))
        #expect(!signer.verify(id: "id2", timestamp: 1000, body: body, header: header, now: 1000))
        #expect(!signer.verify(id: "id1", timestamp: 1000, body: Array("{ }".utf8), header: header, now: 1000))
        #expect(!other.verify(id: "id1", timestamp: 1000, body: body, header: header, now: 1000))
        #expect(!signer.verify(id: "id1", timestamp: 1000, body: body, header: "v1,AAAA v2,xyz", now: 1000))
    }

    @Test func rotationSignsWithBothSecrets() throws {
        let current = WebhookSigner.generateSecret()
        let previous = WebhookSigner.generateSecret()
        let both = try WebhookSigner(secrets: [current, previous])
        let header = both.signature(id: "id", timestamp: 5, body: [1])
        #expect(header.split(separator: " ").count == 2)
        #expect(try WebhookSigner(secrets: [previous]).verify(id: "id", timestamp: 5, body: [1], header: header, now: 5))
        #expect(try WebhookSigner(secrets: [current]).verify(id: "id", timestamp: 5, body: [1], header: header, now: 5))
    }

    @Test func refusesMalformedSecrets() {
        for secret in ["", "secret", "whsec_", "whsec_!!!", "whsec_c2hvcnQ="] {
            #expect(throws: WebhookSigner.InvalidSecret.self) { try WebhookSigner(secrets: [secret]) }
        }
    }

    @Test func payloadShape() throws {
        let body = CallbackPayload.body(
            id: "r1", op: .hash, work: WorkResult(result: ["hash": "ab"], error: nil, durationMs: 1.23456, completedAt: 0),
            at: Date(timeIntervalSince1970: 0))
        let json = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        #expect(json?["request_id"] as? String == "r1")
        #expect(json?["status"] as? String == "completed")
        #expect(json?["timestamp"] as? String == "1970-01-01T00:00:00.000Z")
        #expect((json?["result"] as? [String: Any])?["hash"] as? String == "ab")
        let failed = CallbackPayload.body(
            id: "r2", op: .hash, work: WorkResult(result: nil, error: "boom", durationMs: 0, completedAt: 0), at: Date())
        let failedJSON = try JSONSerialization.jsonObject(with: Data(failed)) as? [String: Any]
        #expect(failedJSON?["status"] as? String == "failed")
        #expect(failedJSON?["result"] == nil)
    }
}

/// Seconds as the store's milliseconds.
func ms(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded()) }
