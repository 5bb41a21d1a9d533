import Config
import JSON
import Synchronization
import WorkEngine

/// `JobStore` on one SQLite file in WAL mode. /async and /sync writes go through a group-commit writer;
/// everything else borrows a connection from a small pool (SQLite connections are per-thread).
public final class SQLiteStore: JobStore {
    private let path: String
    private let durability: Settings.Durability
    private let sizeBound: SizeBound?
    /// The size bound in force (0: none): the one this store set, or the one it last read from the database.
    private let bound = Atomic<Int64>(0)
    private let lastRefusal = Mutex<StorageUsage.Refusal?>(nil)
    /// The writer's estimate of used plus reserved bytes between exact readings (sets-bound stores only).
    private let room = Mutex<RoomEstimate?>(nil)
    private let pool = Mutex<[Database]>([])
    private let writer: GroupCommitWriter<Database, Never, Never>

    /// Opens (creating and migrating if needed) the database at `path`.
    /// `durability` is what a commit survives: power loss (`full`, SQLite's synchronous=FULL) or a process crash (`normal`).
    /// `bound` says whether this store sets the size bound (new rows past it throw `StoreFull`) or follows
    /// the one stored in the database; nil: none.
    public init(path: String, durability: Settings.Durability = .full, bound sizeBound: SizeBound? = nil) throws {
        self.path = path
        self.durability = durability
        self.sizeBound = sizeBound
        let writeConnection = try Database(path: path, durability: durability)
        try Schema.migrate(writeConnection)
        switch sizeBound {
        case nil: break
        case .sets(let bytes):
            try writeConnection.transaction {
                _ = try writeConnection.query(
                    "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", [.text(SizeBound.settingKey), .text(String(bytes))])
            }
            bound.store(bytes, ordering: .relaxed)
        case .follows(let fallback):
            bound.store(try Self.storedBound(writeConnection) ?? fallback, ordering: .relaxed)
        }
        try writeConnection.limit(toBytes: Self.connectionLimit(sizeBound, bound: bound.load(ordering: .relaxed)))
        writer = GroupCommitWriter(db: writeConnection)
    }

    /// A convenience for tests and tools: `maxBytes` is the bound this store sets.
    public convenience init(path: String, durability: Settings.Durability = .full, maxBytes: Int64?) throws {
        try self.init(path: path, durability: durability, bound: maxBytes.map(SizeBound.sets))
    }

    private static func storedBound(_ db: Database) throws -> Int64? {
        try db.query("SELECT value FROM settings WHERE key = ?", [.text(SizeBound.settingKey)]).first?.text(0).flatMap { Int64($0) }
    }

    /// Each connection's max_page_count: the bound for the front door, the bound plus headroom for deliveryd.
    private static func connectionLimit(_ sizeBound: SizeBound?, bound: Int64) -> Int64 {
        switch sizeBound {
        case nil: 1 << 46
        case .sets: bound
        case .follows: bound + SizeBound.headroom(bound)
        }
    }

    deinit { writer.stop() }

    /// Stops the group-commit thread after it has committed what is queued.
    public func close() { writer.stop() }

    /// One connection per thread that needs one, kept for reuse; each with a small page cache (the writer
    /// keeps SQLite's 2 MiB): at 2 MiB each, dozens of request threads held workfcgi near 100 MB resident.
    @discardableResult
    private func withConnection<T>(_ body: (Database) throws -> T) throws -> T {
        let db = try pool.withLock { $0.popLast() } ?? Database(path: path, durability: durability, cacheKiB: 256)
        defer { pool.withLock { $0.append(db) } }
        // The bound a follower reads may have changed since this connection last set its limit.
        let limit = Self.connectionLimit(sizeBound, bound: bound.load(ordering: .relaxed))
        if db.limitBytes != limit { try db.limit(toBytes: limit) }
        return try body(db)
    }

    // MARK: writes through the group commit

    /// A write through the group commit, with SQLite's "full" said in the store's own vocabulary.
    @discardableResult
    private func committed<T: Sendable>(_ write: @escaping @Sendable (Database) throws -> T) throws -> T {
        do {
            return try writer.submit(write)
        } catch let error as SQLiteError where error.isFull {
            throw StoreFull(message: error.message)
        }
    }

    /// Goes through the group-commit writer and back: true proves its loop is turning (systemd's watchdog
    /// asks). Blocks while the writer is stuck.
    public func writerResponds() -> Bool {
        (try? writer.submit { _ in true }) ?? false
    }

    /// What a new row of `bytes` meets, checked inside the write transaction that would insert it: the size
    /// bound (this store's, when it sets one; pages in use plus every accepted job's reserve, read exactly
    /// near the bound, estimated far from it) and the client's storage share (kept by schema 10's triggers).
    /// Runs on the writer's thread only.
    /// `stored`: the client's bytes, when the caller has read them already in its own statement.
    private func checkRoom(_ db: Database, client: String, bytes: Int64, clientStorageLimit: Int64, stored: Int64? = nil) throws -> Int64? {
        if case .sets(let limit) = sizeBound {
            let now = WallClock.nowMillis()
            let estimated = room.withLock { estimate in
                guard estimate?.admits(bytes, bound: limit, now: now) == true else { return false }
                estimate?.admitted(bytes)
                return true
            }
            if !estimated {
                let usage = try Self.usage(db, bound: limit)
                var estimate = RoomEstimate(reading: usage, at: now)
                guard usage.admits(bytes) else {
                    room.withLock { $0 = estimate }
                    lastRefusal.withLock { $0 = .init(at: now, bytes: usage.usedBytes + usage.reservedBytes) }
                    throw StoreFull(message: "\(usage.usedBytes) bytes used and \(usage.reservedBytes) reserved of \(limit)")
                }
                estimate.admitted(bytes)
                room.withLock { $0 = estimate }
            }
        }
        let stored = try stored ?? Self.clientStorage(db, client)
        return stored + bytes > clientStorageLimit ? stored : nil
    }

    private static func usage(_ db: Database, bound: Int64?) throws -> StorageUsage {
        let pages = try db.query("PRAGMA page_count").first?.int(0) ?? 0
        let free = try db.query("PRAGMA freelist_count").first?.int(0) ?? 0
        let reserved = try db.query("SELECT bytes FROM reserved WHERE id = 1").first?.int(0) ?? 0
        return StorageUsage(usedBytes: (pages - free) * db.pageSize, reservedBytes: max(0, reserved), boundBytes: bound)
    }

    private static func clientStorage(_ db: Database, _ client: String) throws -> Int64 {
        try db.query("SELECT bytes FROM client_storage WHERE client = ?", [.text(client)]).first?.int(0) ?? 0
    }

    public func clientStorage(_ client: String) throws -> Int64 {
        try withConnection { db in try Self.clientStorage(db, client) }
    }

    public func storageUsage() throws -> StorageUsage {
        try withConnection { db in
            if case .follows = sizeBound, let stored = try Self.storedBound(db) { bound.store(stored, ordering: .relaxed) }
            let limit = bound.load(ordering: .relaxed)
            var usage = try Self.usage(db, bound: limit > 0 ? limit : nil)
            usage.refusal = lastRefusal.withLock { $0 }
            return usage
        }
    }

    public func pruneSyncRecords(limit: Int) throws -> Int {
        try withConnection { db in
            try db.transaction {
                // Oldest first by id (UUIDv7, time-ordered), so whole pages at the old end of the table are freed.
                try db.query(
                    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE mode = 'sync' ORDER BY id LIMIT ?)",
                    [.int(Int64(limit))])
                return db.changes
            }
        }
    }

    public func enqueue(
        _ job: NewJob, backlogLimit: Int, clientLimit: Int = .max, clientStorageLimit: Int64 = .max
    ) throws -> EnqueueOutcome {
        // Serialized here, on the request's thread: the writer thread is the one every 202 waits on.
        let (inputText, specText) = (job.input.text, job.spec.stored.text)
        let reserve = Int64(job.spec.resultBytesBound)
        let bytes = Int64(inputText.utf8.count + specText.utf8.count) + reserve
        return try committed { [self] db in
            if let key = job.idempotencyKey {
                let existing = try db.query("SELECT id, created_at, input FROM requests WHERE idempotency_key = ?", [.text(key)])
                if let row = existing.first, let id = row.text(0) {
                    let dayMs: Int64 = 24 * 3600 * 1000
                    if (row.int(1) ?? 0) > job.createdAt - dayMs {
                        return row.text(2) == inputText ? EnqueueOutcome.duplicate(id: id) : .keyReused(id: id)
                    }
                    // Older than a day: the key may be used again.
                    try db.query("UPDATE requests SET idempotency_key = NULL WHERE id = ?", [.text(id)])
                }
            }
            let depth = try Self.backlog(db)
            guard depth < backlogLimit else { return EnqueueOutcome.backlogFull(depth: depth) }
            // The client's unfinished jobs hold turns min...max (two index seeks, however deep the backlog);
            // their span bounds how many there are. Its stored bytes in the same statement (one statement
            // fewer per /async: ~8,000 instructions).
            let turns = try db.query(
                """
                SELECT (SELECT min(turn) FROM requests WHERE client = ?1 AND \(Schema.unfinished)),
                       (SELECT max(turn) FROM requests WHERE client = ?1 AND \(Schema.unfinished)),
                       (SELECT bytes FROM client_storage WHERE client = ?1)
                """, [.text(job.client)]
            ).first
            let (low, high) = (turns?.int(0), turns?.int(1))
            let open = low.flatMap { l in high.map { Int($0 - l + 1) } } ?? 0
            guard open < clientLimit else { return EnqueueOutcome.clientBacklogFull(depth: open) }
            if let stored = try checkRoom(
                db, client: job.client, bytes: bytes, clientStorageLimit: clientStorageLimit, stored: turns?.int(2) ?? 0)
            {
                return EnqueueOutcome.clientStorageFull(storedBytes: stored)
            }
            let turn = high.map { $0 + 1 } ?? 0
            try db.query(
                """
                INSERT INTO requests(id, mode, op, status, input, callback_url, idempotency_key, created_at, next_attempt_at, client, turn,
                    spec, reserve)
                VALUES (?, 'async', ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(job.id), .text(job.spec.op.rawValue), .text(inputText), .text(job.callbackURL),
                    job.idempotencyKey.map(SQLValue.text) ?? .null, .int(job.createdAt), .int(job.createdAt), .text(job.client),
                    .int(turn), .text(specText), .int(reserve),
                ])
            return EnqueueOutcome.accepted(id: job.id)
        }
    }

    public func recordSync(_ record: SyncRecord, clientStorageLimit: Int64 = .max) throws {
        let inputText = record.input.text
        let resultText = record.error == nil ? record.result.text : nil
        let bytes = Int64(inputText.utf8.count + (resultText ?? record.error ?? "").utf8.count)
        try committed { [self] db in
            if let stored = try checkRoom(db, client: record.client, bytes: bytes, clientStorageLimit: clientStorageLimit) {
                throw ClientStorageFull(storedBytes: stored, limitBytes: clientStorageLimit)
            }
            try db.query(
                """
                INSERT INTO requests(id, mode, op, status, input, result, error, created_at, started_at, completed_at, duration_ms, client)
                VALUES (?, 'sync', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(record.id), .text(record.op.rawValue), .text(record.error == nil ? "completed" : "failed"), .text(inputText),
                    resultText.map(SQLValue.text) ?? .null, record.error.map(SQLValue.text) ?? .null,
                    .int(record.createdAt), .int(record.startedAt), .int(record.completedAt), .double(record.durationMs),
                    .text(record.client),
                ])
            return true
        }
    }

    // MARK: the queue

    public func claim(limit: Int, leaseMillis: Int64, now: UnixMillis, owner: String) throws -> [ClaimedJob] {
        try withConnection { db in
            try db.transaction {
                try db.query(
                    """
                    UPDATE requests SET lease_until = ?1 + ?2, lease_owner = ?4, leased_at = ?1,
                        status = CASE status WHEN 'pending' THEN 'processing' ELSE status END,
                        started_at = COALESCE(started_at, ?1)
                    WHERE id IN (
                        -- Fair turns: every client's first unfinished job, then every client's second, and so on,
                        -- so one client's flood cannot starve another's jobs. An index walk: microseconds, however
                        -- deep the backlog (a window over the due jobs took 19 ms at 20,000, holding the write lock).
                        -- INDEXED BY: left to itself the planner picks the status index and sorts every unfinished
                        -- job (48 ms per claim at 100,000).
                        SELECT id FROM requests INDEXED BY requests_turns
                        WHERE \(Schema.unfinished) AND next_attempt_at <= ?1 AND lease_until <= ?1
                        ORDER BY turn, next_attempt_at LIMIT ?3)
                    RETURNING \(Rows.claimColumns)
                    """,
                    [.int(now), .int(leaseMillis), .int(Int64(limit)), .text(owner)]
                ).compactMap { row in
                    try Rows.claimed(row, now: now) { id, failed in try Self.saveResult(db, id: id, owner: owner, failed) }
                }
            }
        }
    }

    public func saveResult(id: String, owner: String, _ work: WorkResult) throws {
        try withConnection { db in try Self.saveResult(db, id: id, owner: owner, work) }
    }

    private static func saveResult(_ db: Database, id: String, owner: String, _ work: WorkResult) throws {
        try db.query(
            """
            UPDATE requests SET status = 'delivering', result = ?, error = ?, completed_at = ?, duration_ms = ?, reserve = 0
            WHERE id = ? AND status = 'processing' AND lease_owner = ?
            """,
            [
                work.result.map { .text($0.text) } ?? .null, work.error.map(SQLValue.text) ?? .null, .int(work.completedAt),
                .double(work.durationMs), .text(id), .text(owner),
            ])
    }

    public func recordAttempts(_ writes: [AttemptWrite], owner: String) throws {
        guard !writes.isEmpty else { return }
        try withConnection { db in
            try db.transaction {
                // An attempt whose request is gone (deleted by retention meanwhile) matches no row in
                // writeAttempt's owner-conditional update, so its attempt row (whose foreign key would fail the
                // whole batch, retried forever) is never inserted.
                for write in writes {
                    if let work = write.computed { try Self.saveResult(db, id: write.id, owner: owner, work) }
                    try Self.writeAttempt(db, id: write.id, owner: owner, attempt: write.attempt, outcome: write.outcome)
                }
            }
        }
    }

    /// The row first, by its owner: the attempt is recorded only when the row was still `owner`'s, so a
    /// stale attempt never takes the number of the new owner's (INSERT OR IGNORE would drop that one).
    private static func writeAttempt(_ db: Database, id: String, owner: String, attempt: AttemptRecord, outcome: AttemptOutcome) throws {
        let owned: Bool
        switch outcome {
        case .delivered:
            // A job whose work failed still reports that failure by callback; it ends `failed`.
            owned = !(try db.query(
                """
                UPDATE requests SET status = CASE WHEN error IS NULL THEN 'completed' ELSE 'failed' END,
                    attempts = ?, delivered_at = ?, next_attempt_at = NULL, lease_until = 0
                WHERE id = ? AND lease_owner = ? RETURNING id
                """, [.int(Int64(attempt.n)), .int(attempt.at), .text(id), .text(owner)]).isEmpty)
        case .retry(let at):
            owned = !(try db.query(
                "UPDATE requests SET attempts = ?, next_attempt_at = ?, lease_until = 0 WHERE id = ? AND lease_owner = ? RETURNING id",
                [.int(Int64(attempt.n)), .int(at), .text(id), .text(owner)]).isEmpty)
        case .giveUp(let reason):
            owned = !(try db.query(
                """
                UPDATE requests SET status = 'failed', attempts = ?, delivery_error = ?, next_attempt_at = NULL,
                    lease_until = 0
                WHERE id = ? AND lease_owner = ? RETURNING id
                """, [.int(Int64(attempt.n)), .text(reason), .text(id), .text(owner)]).isEmpty)
        }
        guard owned else { return }
        try db.query(
            """
            INSERT OR IGNORE INTO attempts(request_id, n, at, duration_ms, http_status, error, next_attempt_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
Rows.attemptBindings(id, attempt))
    }

    public func release(id: String, owner: String) throws {
        try withConnection { db in
            try db.query("UPDATE requests SET lease_until = 0 WHERE id = ? AND lease_owner = ?", [.text(id), .text(owner)])
        }
    }

    public func releaseLeases(owner: String?) throws -> Int {
        try withConnection { db in
            try db.transaction {
                let mine = owner == nil ? "" : " AND lease_owner = ?"
                let bindings: [SQLValue] = owner.map { [.text($0)] } ?? []
                try db.query("UPDATE chores SET until = 0 WHERE 1\(owner == nil ? "" : " AND node = ?")", bindings)
                return try db.query(
                    """
                    UPDATE requests SET lease_until = 0
                    WHERE lease_until > 0 AND status IN ('processing', 'delivering')\(mine) RETURNING id
                    """, bindings
                ).count
            }
        }
    }

    public func postpone(id: String, owner: String, until: UnixMillis) throws {
        try withConnection { db in
            try db.query(
                "UPDATE requests SET next_attempt_at = ?, lease_until = 0 WHERE id = ? AND lease_owner = ?", [.int(until), .text(id), .text(owner)])
        }
    }

    public func redeliver(id: String, now: UnixMillis) throws -> RedeliverOutcome {
        try withConnection { db in
            try db.transaction {
                guard let row = try db.query("SELECT status FROM requests WHERE id = ? AND mode = 'async'", [.text(id)]).first,
                    let status = row.text(0).flatMap(JobStatus.init(rawValue:))
                else { return .notFound }
                guard status == .completed || status == .failed else { return .notFinished(status) }
                try db.query(
                    """
                    UPDATE requests SET status = 'delivering', attempt_base = attempts, next_attempt_at = ?, lease_until = 0,
                        delivery_error = NULL, delivered_at = NULL
                    WHERE id = ?
                    """, [.int(now), .text(id)])
                return .requeued
            }
        }
    }

    public func redeliverFailed(_ selection: BulkRedeliver, now: UnixMillis) throws -> BulkRedeliverResult {
        try withConnection { db in
            try db.transaction {
                // requests_by_status(status, id), a page at a time from the window's start (BulkRedeliver.take).
                let taken = try selection.take { after, count in
                    var bindings: [SQLValue] = [.int(selection.window.lowerBound), .int(selection.window.upperBound), .text(after)]
                    var host = ""
                    if let like = selection.likePattern { (host, bindings) = (" AND lower(callback_url) LIKE ?", bindings + [.text(like)]) }
                    return try db.query(
                        """
                        SELECT id, created_at, callback_url FROM requests
                        WHERE status = 'failed' AND mode = 'async' AND created_at >= ? AND created_at < ? AND id > ?\(host)
                        ORDER BY id LIMIT \(count)
                        """, bindings
                    ).compactMap { row in row.text(0).map { ($0, row.int(1) ?? 0, row.text(2)) } }
                }
                for id in taken.requeued {
                    try db.query(
                        """
                        UPDATE requests SET status = 'delivering', attempt_base = attempts, next_attempt_at = ?, lease_until = 0,
                            delivery_error = NULL, delivered_at = NULL
                        WHERE id = ?
                        """, [.int(now), .text(id)])
                }
                return taken
            }
        }
    }

    // MARK: reads

    public func request(id: String) throws -> RequestRecord? {
        try withConnection { db in
            guard let row = try db.query("SELECT \(Rows.recordColumns) FROM requests WHERE id = ?", [.text(id)]).first,
                var record = Rows.record(row)
            else { return nil }
            record.trace = try db.query(
                "SELECT \(Rows.attemptColumns) FROM attempts WHERE request_id = ? ORDER BY n", [.text(id)]
            ).map(Rows.attempt)
            return record
        }
    }

    public func requests(_ query: RequestQuery) throws -> [RequestRecord] {
        var conditions: [String] = []
        var bindings: [SQLValue] = []
        if let mode = query.mode {
            conditions.append("mode = ?")
            bindings.append(.text(mode.rawValue))
        }
        if let status = query.status {
            conditions.append("status = ?")
            bindings.append(.text(status.rawValue))
        }
        if let before = query.before {
            conditions.append("id < ?")
            bindings.append(.text(before))
        }
        bindings.append(.int(Int64(query.limit)))
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return try withConnection { db in
            try db.query("SELECT \(Rows.recordColumns) FROM requests \(whereClause) ORDER BY id DESC LIMIT ?", bindings)
                .compactMap(Rows.record)
        }
    }

    /// pending + processing, on a given connection (the enqueue check runs inside the group commit).
    private static func backlog(_ db: Database) throws -> Int {
        // Kept by triggers (schema 5): one row, however deep the backlog.
        Int(try db.query("SELECT jobs FROM backlog WHERE id = 1").first?.int(0) ?? 0)
    }

    public func backlog() throws -> Int {
        try withConnection { db in
            try Self.backlog(db)
        }
    }

    public func prune(finishedBefore before: UnixMillis, limit: Int) throws -> Int {
        try withConnection { db in
            try db.transaction {
                // Finished means: completed or failed, and no longer being delivered (a redelivery resets it).
                try db.query(
                    """
                    DELETE FROM requests WHERE id IN (
                        SELECT id FROM requests WHERE status IN ('completed', 'failed')
                        AND COALESCE(delivered_at, completed_at, created_at) < ? LIMIT ?)
                    """, [.int(before), .int(Int64(limit))])
                return db.changes
            }
        }
    }

    public func jobsInHand(now: UnixMillis, limit: Int) throws -> [JobInHand] {
        try withConnection { db in
            try db.query(
                """
                SELECT \(Rows.inHandColumns) FROM requests INDEXED BY requests_by_status
                WHERE status IN ('processing', 'delivering') AND lease_until > ? LIMIT ?
                """, [.int(now), .int(Int64(limit))]
            ).compactMap(Rows.inHand).sorted { ($0.leaseUntil, $0.id) < ($1.leaseUntil, $1.id) }
        }
    }

    public func oldestPendingCreatedAt() throws -> UnixMillis? {
        try withConnection { db in
            try db.query("SELECT created_at FROM requests WHERE status = 'pending' ORDER BY id LIMIT 1").first?.int(0)
        }
    }

    public func failedAttemptsPerMinute(since: UnixMillis) throws -> [MinuteCount] {
        try withConnection { db in
            try db.query(
                """
                SELECT at / 60000, count(*) FROM attempts INDEXED BY attempts_at WHERE at >= ?
                AND \(Schema.failedAttempt) GROUP BY at / 60000 ORDER BY 1
                """, [.int(since)]
            ).map { MinuteCount(minute: ($0.int(0) ?? 0) * 60_000, count: Int($0.int(1) ?? 0)) }
        }
    }

    public func statusCounts() throws -> [(mode: RequestMode, status: JobStatus, count: Int)] {
        try withConnection { db in
            try db.query("SELECT mode, status, count(*) FROM requests GROUP BY mode, status ORDER BY mode, status").compactMap { row in
                guard let mode = row.text(0).flatMap(RequestMode.init(rawValue:)), let status = row.text(1).flatMap(JobStatus.init(rawValue:)) else { return nil }
                return (mode, status, Int(row.int(2) ?? 0))
            }
        }
    }

    public func heartbeat(_ node: NodeStatus, renew: [String], leaseMillis: Int64, now: UnixMillis) throws -> LeaseRenewal {
        try withConnection { db in
            try db.transaction {
                try db.query(
                    """
                    INSERT OR REPLACE INTO nodes(\(Rows.nodeColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(node.id), .text(node.name), .int(Int64(node.pid)), .int(node.startedAt), .int(node.heartbeatAt),
                        node.stoppedAt.map(SQLValue.int) ?? .null, .int(Int64(node.activeWorkers)), .text(Rows.circuitsText(node.circuits)),
                        .text(node.stats.json.text),
                    ])
                guard node.stoppedAt == nil else { return LeaseRenewal() }
                var renewal = LeaseRenewal()
                // By primary key, in chunks (SQLite's bound parameters are limited): the cost follows the jobs in
                // hand, not the table.
                for start in stride(from: 0, to: renew.count, by: 500) {
                    let chunk = renew[start..<min(renew.count, start + 500)]
                    let inChunk = chunk.indices.map { "?\($0 - start + 4)" }.joined(separator: ", ")
                    renewal.renewed += try db.query(
                        """
                        UPDATE requests SET lease_until = ?1 + ?2
                        WHERE lease_owner = ?3 AND lease_until > ?1 AND id IN (\(inChunk))
                        RETURNING id
                        """, [.int(now), .int(leaseMillis), .text(node.id)] + chunk.map(SQLValue.text)
                    ).compactMap { $0.text(0) }
                    let mine = Set(
                        try db.query(
                            "SELECT id FROM requests WHERE lease_owner = ?3 AND id IN (\(inChunk))",
                            [.int(now), .int(leaseMillis), .text(node.id)] + chunk.map(SQLValue.text)
                        ).compactMap { $0.text(0) })
                    renewal.lost += chunk.filter { !mine.contains($0) }
                }
                return renewal
            }
        }
    }

    public func nodes() throws -> [NodeStatus] {
        try withConnection { db in
            try db.query("SELECT \(Rows.nodeColumns) FROM nodes ORDER BY name, started_at, id").map(Rows.node)
        }
    }

    public func pruneNodes(before: UnixMillis) throws -> Int {
        try withConnection { db in
            try db.query("DELETE FROM nodes WHERE heartbeat_at < ? RETURNING id", [.int(before)]).count
        }
    }

    public func takeChore(_ chore: Chore, node: String, until: UnixMillis, now: UnixMillis) throws -> Bool {
        try withConnection { db in
            !(try db.query(
                """
                INSERT INTO chores(name, node, until) VALUES (?1, ?2, ?3)
                ON CONFLICT(name) DO UPDATE SET node = excluded.node, until = excluded.until
                WHERE chores.node = excluded.node OR chores.until <= ?4
                RETURNING node
                """, [.text(chore.rawValue), .text(node), .int(until), .int(now)]
            ).isEmpty)
        }
    }

    public func rescue(nodeTimeoutMillis: Int64, now: UnixMillis) throws -> [Rescue] {
        try withConnection { db in
            try db.transaction {
                let owners = try db.query(
                    """
                    UPDATE requests INDEXED BY requests_by_status SET lease_until = 0
                    WHERE status IN ('processing', 'delivering') AND lease_until > ?1
                    AND lease_owner NOT IN (SELECT id FROM nodes WHERE \(NodeStatus.aliveSQL(now: "?1", timeout: "?2")))
                    RETURNING lease_owner
                    """, [.int(now), .int(nodeTimeoutMillis)]
                ).compactMap { $0.text(0) }
                guard !owners.isEmpty else { return [] }
                let names = Dictionary(
                    try db.query("SELECT id, name FROM nodes").compactMap { row in row.text(0).map { ($0, row.text(1) ?? "") } },
                    uniquingKeysWith: { a, _ in a })
                return Rows.rescues(owners, names: names)
            }
        }
    }

    /// Reads and deletes a value kept in the settings table (how older versions kept the generated secret).
    public func takeSetting(_ key: String) throws -> String? {
        try withConnection { db in
            try db.transaction {
                let value = try db.query("SELECT value FROM settings WHERE key = ?", [.text(key)]).first?.text(0)
                try db.query("DELETE FROM settings WHERE key = ?", [.text(key)])
                return value
            }
        }
    }
}
