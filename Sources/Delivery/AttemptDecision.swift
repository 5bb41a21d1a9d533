import CallbackPolicy
import Store

/// How a delivery attempt ended.
public enum AttemptEnd: Sendable, Equatable {
    /// The URL failed the policy, checked again before the attempt: nothing was sent.
    case refused(CallbackURLRefusal)
    /// Its host name gave no usable address this time (no answer within the deadline, no such name, a
    /// blocked address, too many lookups of its client in flight): nothing was sent. DNS may change.
    case unresolved(String)
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
        case .unresolved(let why): why
        case .transfer(let result): result.error
        }
    }
}

/// Every decision of one delivery attempt, as a pure function of what happened (the shape of postgres-nio's
/// state machines): before it, the URL's fresh check, its host name's lookup and the gate of the address it
/// resolved to decide whether to send; after it, the ending and the retry schedule decide what the job does
/// next. `Deliverer` carries them out.
public struct AttemptDecision: Sendable {
    public var retry: RetryPolicy

    public init(retry: RetryPolicy) {
        self.retry = retry
    }

    public enum Start: Sendable, Equatable {
        /// The host is a name: look it up (on the delivery path, not a compute worker), then `resolved`.
        case resolve(CallbackTarget)
        /// Send the callback to this target; report its end to the gate of `endpoint` (address and port).
        case send(CallbackTarget, endpoint: String)
        /// The endpoint's circuit is open: look at the job again at `until`. Not an attempt.
        case postpone(until: UnixMillis, reason: String)
        /// The endpoint is at its concurrency limit: hold the job until one of its attempts ends, then ask again.
        case wait(CallbackTarget, endpoint: String)
        /// Nothing is sent: this attempt has ended already.
        case ended(AttemptEnd)
    }

    /// Before an attempt: `checked` is the URL's check at this moment (the settings may have changed since
    /// the job was accepted). A literal address goes to its gate; a name is to be looked up first.
    public func start(checked: Result<CallbackTarget, CallbackURLRefusal>, admit: (String) -> HostGate.Admission) -> Start {
        switch checked {
        case .failure(let refusal): return .ended(.refused(refusal))
        case .success(let target) where target.address == nil: return .resolve(target)
        case .success(let target): return admitting(target, admit)
        }
    }

    /// After the lookup of a name `start` asked for: every address must pass `policy`, and the gate asked is
    /// the one of the address connected to, so many names for one address share one limit and one breaker.
    public func resolved(
        _ target: CallbackTarget, lookup: Result<[IPAddress], LookupFailure>, policy: CallbackURLPolicy,
        admit: (String) -> HostGate.Admission
    ) -> Start {
        switch lookup {
        case .failure(let failure): return .ended(.unresolved(failure.message))
        case .success(let addresses):
            do throws(CallbackURLRefusal) {
                return admitting(try policy.pin(target, to: addresses), admit)
            } catch {
                return .ended(.unresolved(error.message))
            }
        }
    }

    /// A target whose address is known (a literal, a looked-up name, a held job asking again) goes to the
    /// gate of its endpoint: send, wait for the endpoint or postpone.
    public func admitting(_ target: CallbackTarget, _ admit: (String) -> HostGate.Admission) -> Start {
        let endpoint = target.endpoint
        switch admit(endpoint) {
        case .go: return .send(target, endpoint: endpoint)
        case .busy: return .wait(target, endpoint: endpoint)
        case .later(let until, let reason): return .postpone(until: until, reason: reason)
        }
    }

    /// After an attempt: what the job does next. `attemptInSeries` counts from the first attempt of the
    /// current series (a redelivery starts a new one). A refused URL gives up at once: waiting will not
    /// make it acceptable. A name that did not resolve to a usable address is retried like a receiver that
    /// did not answer: DNS may change before the schedule runs out.
    public func outcome(of end: AttemptEnd, attemptInSeries: Int, now: UnixMillis, random: Double) -> AttemptOutcome {
        switch end {
        case .refused: .giveUp(reason: end.error ?? "callback URL refused")
        case .unresolved(let why):
            retry.decide(attempt: attemptInSeries, result: AttemptResult(httpStatus: nil, error: why), random: random, now: now)
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
