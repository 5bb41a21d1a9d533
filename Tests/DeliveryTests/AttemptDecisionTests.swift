import CallbackPolicy
import Testing

@testable import Delivery

@Suite struct AttemptDecisionTests {
    let decision = AttemptDecision(retry: RetryPolicy(schedule: [1, 2], jitter: 0))
    let target = try! CallbackURLPolicy(allowPrivate: false, allowedPorts: [80...80]).vet("http://93.184.216.34/hook")

    @Test func sendsWhenTheURLPassesAndTheHostAdmits() {
        var asked: [String] = []
        let start = decision.start(vetted: .success(target)) { host in asked.append(host); return .go }
        #expect(start == .send(target, host: "93.184.216.34:80"))
        #expect(asked == ["93.184.216.34:80"])
    }

    @Test func postponesWithoutAnAttemptWhenTheGateSaysLater() {
        let start = decision.start(vetted: .success(target)) { _ in .later(until: 5_000, reason: "circuit open") }
        #expect(start == .postpone(until: 5_000, reason: "circuit open"))
    }

    @Test func waitsWithoutAnAttemptWhenTheHostIsBusy() {
        let start = decision.start(vetted: .success(target)) { _ in .busy }
        #expect(start == .wait(target, host: "93.184.216.34:80"))
    }

    @Test func aRefusedURLEndsAtOnceWithoutAskingTheGateAndGivesUp() {
        var asked = false
        let refusal = CallbackURLRefusal("host x resolves to 10.0.0.1")
        let start = decision.start(vetted: .failure(refusal)) { _ in asked = true; return .go }
        #expect(start == .ended(.refused(refusal)) && !asked)
        // Even on the first attempt of a series with retries left: waiting will not make it acceptable.
        let outcome = decision.outcome(of: .refused(refusal), attemptInSeries: 1, now: 1_000, random: 0.5)
        #expect(outcome == .giveUp(reason: "callback URL refused: host x resolves to 10.0.0.1"))
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
