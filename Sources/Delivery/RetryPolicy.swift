import Store

/// How one delivery attempt ended, as far as the retry decision is concerned.
public struct AttemptResult: Sendable, Equatable {
    /// The receiver's HTTP status, or nil when no response arrived (connect error, timeout, refusal).
    public var httpStatus: Int?
    /// What went wrong, when something did.
    public var error: String?
    /// The receiver's Retry-After, in seconds, when it sent one.
    public var retryAfterSeconds: Double?
    /// The receiver answered `webhook-delivery: abort-message` (Svix's header): stop retrying this job.
    public var abort: Bool

    public init(httpStatus: Int?, error: String?, retryAfterSeconds: Double? = nil, abort: Bool = false) {
        self.httpStatus = httpStatus
        self.error = error
        self.retryAfterSeconds = retryAfterSeconds
        self.abort = abort
    }

    /// The response header, and the one value of it, with which a receiver stops retries.
    public static let abortHeader = "webhook-delivery"
    public static let abortValue = "abort-message"
}

/// The retry schedule: 2xx delivers; 410, or any answer with `webhook-delivery: abort-message`, stops at
/// once; anything else (3xx, 4xx, 5xx, no answer) is retried after the schedule's next delay with ± jitter,
/// or after the receiver's Retry-After when that is longer (429/503), until the schedule is used up.
public struct RetryPolicy: Sendable, Equatable {
    /// Delay before the 2nd, 3rd, ... attempt, in seconds.
    public var schedule: [Double]
    /// Fraction of each delay added or removed at random (0.25 = ±25 %).
    public var jitter: Double
    /// Longest Retry-After honoured; a receiver cannot park a job for a week.
    public var maxRetryAfter: Double

    public init(schedule: [Double], jitter: Double, maxRetryAfter: Double = 3600) {
        self.schedule = schedule
        self.jitter = jitter
        self.maxRetryAfter = maxRetryAfter
    }

    public var maxAttempts: Int { schedule.count + 1 }

    /// Decides after attempt number `attempt` (1-based) that ended at `now`. `random` is uniform in 0...1
    /// (injected for tests).
    public func decide(attempt: Int, result: AttemptResult, random: Double, now: UnixMillis) -> AttemptOutcome {
        if let status = result.httpStatus {
            if (200...299).contains(status) { return .delivered }
            if status == 410 { return .giveUp(reason: "receiver answered 410 Gone: stopped retrying") }
            if result.abort { return .giveUp(reason: "receiver answered HTTP \(status) with webhook-delivery: abort-message: stopped retrying") }
        }
        guard attempt < maxAttempts else {
            return .giveUp(reason: "gave up after \(attempt) attempt\(attempt == 1 ? "" : "s"); last: \(Self.describe(result))")
        }
        let base = schedule[attempt - 1]
        var delay = base * (1 + jitter * (2 * random - 1))
        if let status = result.httpStatus, status == 429 || status == 503, let after = result.retryAfterSeconds {
            delay = max(delay, min(after, maxRetryAfter))
        }
        return .retry(at: now + UnixMillis((max(0, delay) * 1000).rounded()))
    }

    static func describe(_ result: AttemptResult) -> String {
        if let status = result.httpStatus { return "HTTP \(status)" }
        return result.error ?? "no response"
    }
}
