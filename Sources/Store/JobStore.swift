import JSON
import WorkEngine

/// What a daemon needs of its store besides the queue: closing it, and the watchdog's probe of its writer.
public protocol DaemonStore: JobStore {
    func close()
    /// True once a no-op write went through the group-commit writer and back.
    func writerResponds() -> Bool
}

extension SQLiteStore: DaemonStore {}
extension PostgresStore: DaemonStore {}

/// The queue and record of requests, implemented by SQLiteStore and PostgresStore (JobStoreTests runs the
/// same tests on both); nothing specific to either leaks.
public protocol JobStore: Sendable {
    /// Inserts an /async job and returns once it is committed, unless the backlog or the client's storage
    /// share is full. Throws `StoreFull` at the size bound.
    func enqueue(_ job: NewJob, backlogLimit: Int, clientLimit: Int, clientStorageLimit: Int64) throws -> EnqueueOutcome
    /// Records a finished /sync request. Throws `StoreFull` at the size bound, `ClientStorageFull` past the
    /// client's share.
    func recordSync(_ record: SyncRecord, clientStorageLimit: Int64) throws
    /// Bytes the client's rows hold now (input, spec, result, and its unfinished jobs' reserve).
    func clientStorage(_ client: String) throws -> Int64
    /// How full the store is, against the bound in force (re-read from the database where it is followed).
    func storageUsage() throws -> StorageUsage
    /// Deletes up to `limit` of the oldest /sync records, whatever their age (the store near its bound).
    func pruneSyncRecords(limit: Int) throws -> Int
    /// Leases up to `limit` due jobs to `owner` (a node's id) until `now + leaseMillis`. Jobs whose lease ran
    /// out are due again.
    func claim(limit: Int, leaseMillis: Int64, now: UnixMillis, owner: String) throws -> [ClaimedJob]
    /// Stores the work's outcome; the job moves on to `delivering`.
    ///
    /// This, `recordAttempts`, `release` and `postpone` are deliveryd's writes about a job it claimed: each
    /// changes the job's row only while its `lease_owner` is still `owner` (the owner it claimed with), so a
    /// node whose lease was rescued and claimed by another node (it stalled, or was cut off) cannot undo the
    /// new owner's work. The rule lives in the statements, where the data is, for every store alike.
    func saveResult(id: String, owner: String, _ work: WorkResult) throws
    /// Records delivery attempts and what follows from each (with the work, when it was not saved yet), all in
    /// one transaction: one commit for a burst of finished callbacks. A write for a job `owner` no longer
    /// owns records nothing, not even its attempt: its number is the owner's next one, which a stale record
    /// would take (the callback went out all the same, with the job's webhook-id).
    func recordAttempts(_ writes: [AttemptWrite], owner: String) throws
    /// Gives a leased job back at once (deliveryd shutting down), if `owner` still has it.
    func release(id: String, owner: String) throws
    /// Makes the jobs leased to `owner` claimable at once, and gives its chores up (a clean stop); nil: every
    /// lease and chore, for a deliveryd that holds SQLite's instance lock, so any lease it finds was left by a
    /// predecessor that died. Returns how many jobs were taken back.
    func releaseLeases(owner: String?) throws -> Int
    /// Gives a leased job back to be looked at again at `until`, without counting an attempt (a host's
    /// concurrency limit or open circuit breaker).
    /// Only while `owner` still has it.
    func postpone(id: String, owner: String, until: UnixMillis) throws
    /// Queues a finished async job's callback again with a fresh attempt series and the same webhook-id.
    func redeliver(id: String, now: UnixMillis) throws -> RedeliverOutcome
    /// Queues again, each as `redeliver(id:now:)` does, up to `selection.limit` of the failed async jobs it
    /// matches, oldest first, in one transaction.
    func redeliverFailed(_ selection: BulkRedeliver, now: UnixMillis) throws -> BulkRedeliverResult
    func request(id: String) throws -> RequestRecord?
    func requests(_ query: RequestQuery) throws -> [RequestRecord]
    /// pending + processing: jobs whose work has not run yet.
    func backlog() throws -> Int
    /// Up to `limit` jobs leased at `now` (lease not run out), oldest lease first: what deliveryd has in hand.
    /// Read through the status index over processing and delivering rows.
    func jobsInHand(now: UnixMillis, limit: Int) throws -> [JobInHand]
    /// When the oldest pending job was accepted; nil when none is pending. One index step (ids are time-ordered).
    func oldestPendingCreatedAt() throws -> UnixMillis?
    /// Failed callback attempts (no 2xx, or an error) per minute since `since`, oldest first, minutes without
    /// one left out. Read through the index on attempts' time (schema 11).
    func failedAttemptsPerMinute(since: UnixMillis) throws -> [MinuteCount]
    /// How many requests are in each status, per mode ("sync" or "async").
    func statusCounts() throws -> [(mode: RequestMode, status: JobStatus, count: Int)]
    /// Deletes up to `limit` completed or failed requests (and their attempts) finished before `before`.
    func prune(finishedBefore before: UnixMillis, limit: Int) throws -> Int
    /// A node's heartbeat: writes its row (by id; `stoppedAt` set marks a clean stop) and, while it runs,
    /// renews the leases of `renew` (its jobs in hand) that it still owns and that have not run out, until
    /// `now + leaseMillis`. Returns the ids renewed, and those of `renew` it no longer owns (another node's now,
    /// or gone).
    func heartbeat(_ node: NodeStatus, renew: [String], leaseMillis: Int64, now: UnixMillis) throws -> LeaseRenewal
    /// Every node's row, by name then start.
    func nodes() throws -> [NodeStatus]
    /// Deletes the rows of nodes whose last heartbeat (or clean stop) is older than `before`.
    func pruneNodes(before: UnixMillis) throws -> Int
    /// Takes or keeps `chore` for `node` until `until`: true when the chore was free (its holder's `until`
    /// passed at `now`) or already `node`'s. One conditional write, so two nodes never both hold it.
    func takeChore(_ chore: Chore, node: String, until: UnixMillis, now: UnixMillis) throws -> Bool
    /// Makes every job leased by a node that is not alive at `now` (`NodeStatus.liveness`; no row counts as
    /// dead) claimable at once; returns how many, per owner.
    func rescue(nodeTimeoutMillis: Int64, now: UnixMillis) throws -> [Rescue]
}

extension JobStore {
    /// A claim with no owner: for tests and tools, never a running node (the rescuer takes such leases back).
    public func claim(limit: Int, leaseMillis: Int64, now: UnixMillis) throws -> [ClaimedJob] {
        try claim(limit: limit, leaseMillis: leaseMillis, now: now, owner: "")
    }

    /// Records one delivery attempt and what follows from it, in its own transaction; the owner defaults to
    /// the ownerless claim's.
    public func recordAttempt(id: String, attempt: AttemptRecord, outcome: AttemptOutcome, owner: String = "") throws {
        try recordAttempts([AttemptWrite(id: id, attempt: attempt, outcome: outcome)], owner: owner)
    }

    // The writes of a job claimed with no owner, for tests and tools, as that claim.
    public func saveResult(id: String, _ work: WorkResult) throws { try saveResult(id: id, owner: "", work) }
    public func recordAttempts(_ writes: [AttemptWrite]) throws { try recordAttempts(writes, owner: "") }
    public func release(id: String) throws { try release(id: id, owner: "") }
    public func postpone(id: String, until: UnixMillis) throws { try postpone(id: id, owner: "", until: until) }
}

/// The database reached WORKFCGI_MAX_DB_SIZE (or the disk is full): nothing more can be written until
/// retention frees space.
public struct StoreFull: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "store full: \(message)" }
    public init(message: String) { self.message = message }
}
