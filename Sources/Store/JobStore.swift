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
    func saveResult(id: String, _ work: WorkResult) throws
    /// Records delivery attempts and what follows from each (with the work, when it was not saved yet), all in
    /// one transaction: one commit for a burst of finished callbacks.
    func recordAttempts(_ writes: [AttemptWrite]) throws
    /// Gives a leased job back at once (deliveryd shutting down).
    func release(id: String) throws
    /// Makes the jobs leased to `owner` claimable at once, and gives its chores up (a clean stop); nil: every
    /// lease and chore, for a deliveryd that holds SQLite's instance lock, so any lease it finds was left by a
    /// predecessor that died. Returns how many jobs were taken back.
    func releaseLeases(owner: String?) throws -> Int
    /// Gives a leased job back to be looked at again at `until`, without counting an attempt (a host's
    /// concurrency limit or open circuit breaker).
    func postpone(id: String, until: UnixMillis) throws
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
    /// `now + leaseMillis`. Returns the ids renewed.
    func heartbeat(_ node: NodeStatus, renew: [String], leaseMillis: Int64, now: UnixMillis) throws -> [String]
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

    /// Records one delivery attempt and what follows from it, in its own transaction.
    public func recordAttempt(id: String, attempt: AttemptRecord, outcome: AttemptOutcome) throws {
        try recordAttempts([AttemptWrite(id: id, attempt: attempt, outcome: outcome)])
    }
}

/// The database reached WORKFCGI_MAX_DB_SIZE (or the disk is full): nothing more can be written until
/// retention frees space.
public struct StoreFull: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "store full: \(message)" }
    public init(message: String) { self.message = message }
}
