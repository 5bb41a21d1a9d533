import JSON
import WorkEngine

/// A job's lifecycle. `delivering` means the result is ready and the callback is being attempted.
public enum JobStatus: String, Sendable, CaseIterable {
    case pending, processing, delivering, completed, failed
}

/// An /async job to insert.
public struct NewJob: Sendable {
    public var id: String
    /// The validated work: stored as is, so deliveryd reads it back without parsing the request again.
    public var spec: JobSpec
    /// The request body as received (normalized), for the record and the idempotency check.
    public var input: JSONValue
    public var callbackURL: String
    public var idempotencyKey: String?
    public var createdAt: UnixMillis
    /// Who submitted it (the client address): bounds and fair turns are per client.
    public var client: String

    public init(
        id: String, spec: JobSpec, input: JSONValue, callbackURL: String, idempotencyKey: String?, createdAt: UnixMillis,
        client: String = ""
    ) {
        self.client = client
        self.id = id
        self.spec = spec
        self.input = input
        self.callbackURL = callbackURL
        self.idempotencyKey = idempotencyKey
        self.createdAt = createdAt
    }
}

/// A /sync request, recorded once it has finished.
public struct SyncRecord: Sendable {
    public var id: String
    public var op: JobSpec.Op
    public var input: JSONValue
    public var result: JSONValue
    /// Set when the work failed (a handler's: its error document as text): the record is `failed`, `result` unused.
    public var error: String?
    public var createdAt: UnixMillis
    public var startedAt: UnixMillis
    public var completedAt: UnixMillis
    public var durationMs: Double
    /// Who sent it (the client address): its record counts against that client's storage share.
    public var client: String

    public init(
        id: String, op: JobSpec.Op, input: JSONValue, result: JSONValue, error: String? = nil, createdAt: UnixMillis, startedAt: UnixMillis,
        completedAt: UnixMillis, durationMs: Double, client: String = ""
    ) {
        self.error = error
        self.client = client
        self.id = id
        self.op = op
        self.input = input
        self.result = result
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.durationMs = durationMs
    }
}

/// What `enqueue` did.
public enum EnqueueOutcome: Sendable, Equatable {
    /// Committed: the job will run and be delivered.
    case accepted(id: String)
    /// A job with the same idempotency key and the same body was accepted earlier; no new job.
    case duplicate(id: String)
    /// The idempotency key was used within the last day for a different body; nothing was written.
    case keyReused(id: String)
    /// pending + processing is at the configured bound; nothing was written.
    case backlogFull(depth: Int)
    /// This client's unfinished jobs (delivering included) are at the per-client bound; nothing was written.
    case clientBacklogFull(depth: Int)
    /// This client's stored bytes (with the new job and its result's reserve) would pass the per-client
    /// storage bound; nothing was written.
    case clientStorageFull(storedBytes: Int64)
}

/// A job deliveryd has leased.
public struct ClaimedJob: Sendable {
    public var id: String
    public var op: JobSpec.Op
    public var work: Work
    public var callbackURL: String
    public var attempts: Int
    /// Attempts made before the current series (a redelivery starts a new one).
    public var attemptBase: Int
    public var createdAt: UnixMillis
    public var leaseUntil: UnixMillis
    /// When it became due (accepted, or its retry time): claim time minus this is the queue's lag.
    public var dueAt: UnixMillis
    /// Who submitted it (the client address): deliveryd bounds each client's callback host lookups.
    public var client: String = ""

    public init(
        id: String, op: JobSpec.Op, work: Work, callbackURL: String, attempts: Int, attemptBase: Int, createdAt: UnixMillis,
        leaseUntil: UnixMillis, dueAt: UnixMillis, client: String = ""
    ) {
        (self.id, self.op, self.work, self.callbackURL, self.attempts, self.attemptBase) = (id, op, work, callbackURL, attempts, attemptBase)
        (self.createdAt, self.leaseUntil, self.dueAt, self.client) = (createdAt, leaseUntil, dueAt, client)
    }

    /// Where a claimed job's work stands.
    public enum Work: Sendable, Equatable {
        /// Not run yet.
        case toDo(JobSpec)
        /// Ran in an earlier lease (or could not be read back): only delivery remains.
        case done(WorkResult)
    }
}

/// One delivery attempt, as recorded.
public struct AttemptRecord: Sendable, Equatable {
    public var n: Int
    public var at: UnixMillis
    public var durationMs: Double
    public var httpStatus: Int?
    public var error: String?
    public var nextAttemptAt: UnixMillis?

    public init(n: Int, at: UnixMillis, durationMs: Double, httpStatus: Int?, error: String?, nextAttemptAt: UnixMillis?) {
        self.n = n
        self.at = at
        self.durationMs = durationMs
        self.httpStatus = httpStatus
        self.error = error
        self.nextAttemptAt = nextAttemptAt
    }
}

/// A job's work once it has run: what its callback reports and its record keeps. Saved on its own
/// (`saveResult`), or with its first attempt when the work was short (`AttemptWrite.computed`).
public struct WorkResult: Sendable, Equatable {
    public var result: JSONValue?
    public var error: String?
    public var durationMs: Double
    /// When the work ended (the record's completed_at).
    public var completedAt: UnixMillis
    public init(result: JSONValue?, error: String?, durationMs: Double, completedAt: UnixMillis) {
        self.result = result
        self.error = error
        self.durationMs = durationMs
        self.completedAt = completedAt
    }
}

/// One attempt to record, with the work it delivered when that was not saved yet.
public struct AttemptWrite: Sendable, Equatable {
    public var id: String
    public var attempt: AttemptRecord
    public var outcome: AttemptOutcome
    public var computed: WorkResult?
    public init(id: String, attempt: AttemptRecord, outcome: AttemptOutcome, computed: WorkResult? = nil) {
        self.id = id
        self.attempt = attempt
        self.outcome = outcome
        self.computed = computed
    }
}

/// What an attempt decided for the job.
public enum AttemptOutcome: Sendable, Equatable {
    case delivered
    case retry(at: UnixMillis)
    case giveUp(reason: String)

    public var kind: AttemptKind {
        switch self {
        case .delivered: .delivered
        case .retry: .retry
        case .giveUp: .gaveUp
        }
    }
}

/// What an attempt decided, without its details: the label of deliveryd's counters and the metric's.
public enum AttemptKind: String, Sendable, CaseIterable {
    case delivered, retry
    case gaveUp = "gave_up"
}

/// A callback endpoint whose circuit breaker has tripped, as deliveryd publishes it with its heartbeat
/// (and reads back when it starts, so a restart does not forget a dead receiver).
public struct Circuit: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Nothing is sent before `retryAt`.
        case open
        /// `retryAt` has passed: the next attempt is the probe that decides.
        case halfOpen = "half-open"
    }

    /// The endpoint connected to (address and port).
    public var host: String
    public var state: State
    public var consecutiveFailures: Int
    public var retryAt: UnixMillis

    public init(host: String, state: State, consecutiveFailures: Int, retryAt: UnixMillis) {
        self.host = host
        self.state = state
        self.consecutiveFailures = consecutiveFailures
        self.retryAt = retryAt
    }

    /// The one encoding, in the heartbeat's row and in /healthz.
    public var json: JSONValue {
        [
            "host": .string(host), "state": .string(state.rawValue), "consecutive_failures": .number(Double(consecutiveFailures)),
            "retry_at": .string(Timestamp.iso8601(millis: retryAt)),
        ]
    }

    /// Reads `json` back; nil when it is not a circuit.
    public init?(json: JSONValue) {
        guard let host = json["host"]?.stringValue, let state = json["state"]?.stringValue.flatMap(State.init(rawValue:)),
            let failures = json["consecutive_failures"]?.intValue, let retryAt = json["retry_at"]?.stringValue.flatMap(Timestamp.millis)
        else { return nil }
        self.init(host: host, state: state, consecutiveFailures: failures, retryAt: retryAt)
    }
}

/// A stored request, sync or async, with its delivery trace.
public struct RequestRecord: Sendable {
    public var id: String
    public var mode: RequestMode
    public var op: JobSpec.Op
    public var status: JobStatus
    public var input: JSONValue
    public var result: JSONValue?
    public var error: String?
    public var callbackURL: String?
    public var deliveryError: String?
    public var attempts: Int
    public var nextAttemptAt: UnixMillis?
    public var createdAt: UnixMillis
    public var startedAt: UnixMillis?
    public var completedAt: UnixMillis?
    public var deliveredAt: UnixMillis?
    public var durationMs: Double?
    public var trace: [AttemptRecord]

    public init(
        id: String, mode: RequestMode, op: JobSpec.Op, status: JobStatus, input: JSONValue, result: JSONValue?, error: String?,
        callbackURL: String?, deliveryError: String?, attempts: Int, nextAttemptAt: UnixMillis?, createdAt: UnixMillis,
        startedAt: UnixMillis?, completedAt: UnixMillis?, deliveredAt: UnixMillis?, durationMs: Double?, trace: [AttemptRecord]
    ) {
        (self.id, self.mode, self.op, self.status, self.input, self.result, self.error) = (id, mode, op, status, input, result, error)
        (self.callbackURL, self.deliveryError, self.attempts, self.nextAttemptAt) = (callbackURL, deliveryError, attempts, nextAttemptAt)
        (self.createdAt, self.startedAt, self.completedAt, self.deliveredAt) = (createdAt, startedAt, completedAt, deliveredAt)
        (self.durationMs, self.trace) = (durationMs, trace)
    }
}

/// Filters for listing requests, newest first.
public struct RequestQuery: Sendable {
    public var mode: RequestMode?
    public var status: JobStatus?
    /// Only ids before this one (the previous page's last id).
    public var before: String?
    public var limit: Int

    public init(mode: RequestMode? = nil, status: JobStatus? = nil, before: String? = nil, limit: Int = 50) {
        self.mode = mode
        self.status = status
        self.before = before
        self.limit = limit
    }
}

/// What `redeliver` did.
public enum RedeliverOutcome: Sendable, Equatable {
    case requeued
    case notFound
    /// Still pending, processing or delivering: nothing to redeliver yet.
    case notFinished(JobStatus)
}

/// A job deliveryd holds now: leased and the lease not run out (computing, or its callback being sent), by
/// which node (its id, a `NodeStatus.id`) and since when (its claim: renewals move `leaseUntil`, not this).
public struct JobInHand: Sendable, Equatable {
    public var id: String
    public var op: JobSpec.Op
    public var status: JobStatus
    public var attempts: Int
    public var createdAt: UnixMillis
    public var leaseUntil: UnixMillis
    public var owner: String
    public var leasedAt: UnixMillis

    public init(
        id: String, op: JobSpec.Op, status: JobStatus, attempts: Int, createdAt: UnixMillis, leaseUntil: UnixMillis, owner: String,
        leasedAt: UnixMillis
    ) {
        (self.id, self.op, self.status, self.attempts, self.createdAt, self.leaseUntil) = (id, op, status, attempts, createdAt, leaseUntil)
        (self.owner, self.leasedAt) = (owner, leasedAt)
    }
}

/// Failed callback attempts in one minute (`minute`: its start, Unix ms).
public struct MinuteCount: Sendable, Equatable {
    public var minute: UnixMillis
    public var count: Int
    public init(minute: UnixMillis, count: Int) { (self.minute, self.count) = (minute, count) }
}
