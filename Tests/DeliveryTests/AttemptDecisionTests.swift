import CallbackPolicy
import Testing

@testable import Delivery

@Suite struct AttemptDecisionTests {
    let decision = AttemptDecision(retry: RetryPolicy(schedule: [1, 2], jitter: 0))
    let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [80...80])
    var target: CallbackTarget { try! policy.check("http://93.184.216.34/hook") }

    @Test func sendsWhenTheURLPassesAndTheEndpointAdmits() {
        var asked: [String] = []
        let start = decision.start(checked: .success(target)) { endpoint in asked.append(endpoint); return .go }
        #expect(start == .send(target, endpoint: "93.184.216.34:80"))
        #expect(asked == ["93.184.216.34:80"])
    }

    @Test func postponesWithoutAnAttemptWhenTheGateSaysLater() {
        let start = decision.start(checked: .success(target)) { _ in .later(until: 5_000, reason: "circuit open") }
        #expect(start == .postpone(until: 5_000, reason: "circuit open"))
    }

    @Test func waitsWithoutAnAttemptWhenTheEndpointIsBusy() {
        let start = decision.start(checked: .success(target)) { _ in .busy }
        #expect(start == .wait(target, endpoint: "93.184.216.34:80"))
    }

    @Test func aRefusedURLEndsAtOnceWithoutAskingTheGateAndGivesUp() {
        var asked = false
        let refusal = CallbackURLRefusal("port 22 is not allowed")
        let start = decision.start(checked: .failure(refusal)) { _ in asked = true; return .go }
        #expect(start == .ended(.refused(refusal)) && !asked)
        // Even on the first attempt of a series with retries left: waiting will not make it acceptable.
        let outcome = decision.outcome(of: .refused(refusal), attemptInSeries: 1, now: 1_000, random: 0.5)
        #expect(outcome == .giveUp(reason: "callback URL refused: port 22 is not allowed"))
    }

    @Test func aNameIsLookedUpBeforeTheGateIsAsked() throws {
        var asked = false
        let named = try policy.check("http://hooks.example.com/cb")
        #expect(decision.start(checked: .success(named)) { _ in asked = true; return .go } == .resolve(named))
        #expect(!asked)
    }

    /// Many names for one address share its gate: the key is the address connected to, not the name.
    @Test func theGateIsKeyedByTheResolvedAddress() throws {
        var asked: [String] = []
        for name in ["a.example.com", "b.example.com", "A.EXAMPLE.COM."] {
            let named = try policy.check("http://\(name)/cb")
            let start = decision.resolved(named, lookup: .success([IPAddress("93.184.216.34")!]), policy: policy) { endpoint in
                asked.append(endpoint)
                return .go
            }
            guard case .send(let pinned, let endpoint) = start else {
                Issue.record("\(name): \(start)")
                continue
            }
            #expect(pinned.address == IPAddress("93.184.216.34") && pinned.host == name.lowercased().trimmingCharacters(in: ["."]))
            #expect(endpoint == "93.184.216.34:80")
        }
        #expect(asked == Array(repeating: "93.184.216.34:80", count: 3))
        let v6 = try policy.check("http://v6.example.com/")
        let start = decision.resolved(v6, lookup: .success([IPAddress("2606:2800:220:1::1")!]), policy: policy) { _ in .busy }
        #expect(start == .wait(try policy.pin(v6, to: [IPAddress("2606:2800:220:1::1")!]), endpoint: "[2606:2800:220:1::1]:80"))
    }

    /// A name that gives no usable address this time is retried on the schedule, the reason on each attempt:
    /// too slow, no such name, a blocked address. Nothing is sent and no gate is asked.
    @Test(arguments: [
        (Result<[IPAddress], LookupFailure>.failure(LookupFailure("host x.example did not resolve within 2s")), "did not resolve within 2s"),
        (.failure(LookupFailure("host x.example does not resolve: Name or service not known")), "does not resolve"),
        (.success([IPAddress("93.184.216.34")!, IPAddress("10.0.0.1")!]), "resolves to 10.0.0.1, a private or reserved address"),
        (.success([IPAddress("::ffff:0:7f00:1")!]), "a private or reserved address"),
        (.success([]), "has no address"),
    ])
    func anUnusableLookupEndsTheAttemptAndIsRetried(lookup: Result<[IPAddress], LookupFailure>, reason: String) throws {
        var asked = false
        let named = try policy.check("http://x.example/cb")
        let start = decision.resolved(named, lookup: lookup, policy: policy) { _ in asked = true; return .go }
        guard case .ended(let end) = start, case .unresolved(let why) = end else {
            Issue.record("\(start)")
            return
        }
        #expect(why.contains(reason), "\(why)")
        #expect(!asked)
        #expect(end.error == why && end.httpStatus == nil)
        #expect(decision.outcome(of: end, attemptInSeries: 1, now: 1_000, random: 0.5) == .retry(at: 2_000))
        #expect(decision.outcome(of: end, attemptInSeries: 2, now: 1_000, random: 0.5) == .retry(at: 3_000))
        #expect(decision.outcome(of: end, attemptInSeries: 3, now: 1_000, random: 0.5) == .giveUp(reason: "gave up after 3 attempts; last: \(why)"))
        #expect(!AttemptDecision.hostHealthy(end))
    }

    @Test func transfersFollowTheRetrySchedule() {
        let failed = AttemptEnd.transfer(AttemptResult(httpStatus: 500, error: "HTTP 500"))
        #expect(decision.outcome(of: failed, attemptInSeries: 1, now: 1_000, random: 0.5) == .retry(at: 2_000))
        #expect(decision.outcome(of: failed, attemptInSeries: 2, now: 1_000, random: 0.5) == .retry(at: 3_000))
        guard case .giveUp = decision.outcome(of: failed, attemptInSeries: 3, now: 1_000, random: 0.5) else {
            Issue.record("three attempts is the schedule's end")
            return
        }
        #expect(decision.outcome(of: .transfer(AttemptResult(httpStatus: 204, error: nil)), attemptInSeries: 3, now: 0, random: 0) == .delivered)
    }

    @Test func hostHealthForTheBreaker() {
        #expect(AttemptDecision.hostHealthy(.transfer(AttemptResult(httpStatus: 404, error: nil))))
        #expect(!AttemptDecision.hostHealthy(.transfer(AttemptResult(httpStatus: 503, error: nil))))
        #expect(!AttemptDecision.hostHealthy(.transfer(AttemptResult(httpStatus: 429, error: nil))))
        #expect(!AttemptDecision.hostHealthy(.transfer(AttemptResult(httpStatus: nil, error: "timeout"))))
        #expect(!AttemptDecision.hostHealthy(.refused(CallbackURLRefusal("no"))))
    }
}
