import CallbackPolicy
import Store

/// How a delivery attempt ended.
public enum AttemptEnd: Sendable, Equatable {
    /// The URL failed the policy, checked again before the attempt: nothing was sent.
    case refused(CallbackURLRefusal)
    /// A transfer ran (or could not start): the receiver's answer, or why none came.
    case transfer(AttemptResult)

    /// The receiver's status, as recorded in the trace.
    public var httpStatus: Int? {
        if case .transfer(let result) = self { return result.httpStatus }
        return nil
    }

    /// What went wrong, as recorded in the trace.
    public var error: String? {
        switch self {
        case .refused(let refusal): "callback URL refused: \(refusal.message)"
        case .transfer(let result): result.error
        }
    }
}

/// Every decision of one delivery attempt, as a pure function of what happened (the shape of postgres-nio's
/// state machines): before it, the URL's fresh check and the host's gate decide whether to send; after
/// it, the ending and the retry schedule decide what the job does next. `Deliverer` carries them out.
public struct AttemptDecision: Sendable {
    public var retry: RetryPolicy

    public init(retry: RetryPolicy) {
        self.retry = retry
    }

    public enum Start: Sendable, Equatable {
        /// Send the callback to this target; report its end to the host's gate under `host`.
        case send(CallbackTarget, host: String)
        /// The host's circuit is open: look at the job again at `until`. Not an attempt.
        case postpone(until: UnixMillis, reason: String)
        /// The host is at its concurrency limit: hold the job until one of its attempts ends, then ask again.
        case wait(CallbackTarget, host: String)
        /// Nothing is sent: this attempt has ended already.
        case ended(AttemptEnd)
    }

    /// Before an attempt: `vetted` is the URL's check at this moment (DNS may have changed since the job
    /// was accepted); `admit` asks the host's gate, and is only asked when there is something to send.
    public func start(vetted: Result<CallbackTarget, CallbackURLRefusal>, admit: (String) -> HostGate.Admission) -> Start {
        let target: CallbackTarget
        switch vetted {
        case .failure(let refusal): return .ended(.refused(refusal))
        case .success(let t): target = t
        }
        let host = "\(target.host):\(target.port)"
        switch admit(host) {
        case .go: return .send(target, host: host)
        case .busy: return .wait(target, host: host)
        case .later(let until, let reason): return .postpone(until: until, reason: reason)
        }
    }

    /// After an attempt: what the job does next. `attemptInSeries` counts from the first attempt of the
    /// current series (a redelivery starts a new one). A refused URL gives up at once: waiting will not
    /// make it acceptable.
    public func outcome(of end: AttemptEnd, attemptInSeries: Int, now: UnixMillis, random: Double) -> AttemptOutcome {
        switch end {
        case .refused: .giveUp(reason: end.error ?? "callback URL refused")
        case .transfer(let result): retry.decide(attempt: attemptInSeries, result: result, random: random, now: now)
        }
    }

    /// Whether an ending counts as the host being healthy for its circuit breaker: it answered, and not
    /// with 5xx or 429.
    public static func hostHealthy(_ end: AttemptEnd) -> Bool {
        guard let status = end.httpStatus else { return false }
        return !(500...599).contains(status) && status != 429
    }
}
