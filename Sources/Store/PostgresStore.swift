import Config
import Foundation
import JSON
import Synchronization
import WorkEngine

/// `JobStore` on PostgreSQL (WORKFCGI_DATABASE_URL), for several workfcgi and deliveryd nodes on one database.
/// The same semantics as `SQLiteStore`, decided by the database rather than by one process:
/// - /async and /sync writes go through the same group-commit writer (one transaction and one WAL flush for
///   every write queued meanwhile), on one connection per process, all of a batch's rows in a few statements
///   (PostgresStore.insert);
/// - every such batch first locks the `counters` row, so the backlog bound, the per-client bounds, the size
///   bound and the idempotency check see every node's commits: two nodes cannot both take the last slot;
/// - claims take due rows `FOR UPDATE SKIP LOCKED`, so nodes claiming together never wait on each other;
/// - every commit that makes a job due (an /async batch, a redeliver) notifies the database's jobs channel
///   (`PostgresNotify`), which every deliveryd node listens on (`PostgresListener`);
/// - the size bound counts the rows' bytes (input, spec, result, and every unfinished job's reserve), kept in
///   the same row by a trigger, not the files: PostgreSQL's files also hold WAL, indexes and dead rows until
///   vacuum, which are the database's operator's to size.
public final class PostgresStore: JobStore {
    private let url: String
    private let sessionSettings: [String]
    private let sizeBound: SizeBound?
    /// The size bound in force (0: none): the one this store set, or the one it last read from the database.
    private let bound = Atomic<Int64>(0)
    private let lastRefusal = Mutex<StorageUsage.Refusal?>(nil)
    private let pool = Mutex<[PostgresConnection]>([])
    /// Bounds this process's connections besides the writer's (PostgreSQL's max_connections is shared by all nodes).
    private let slots: DispatchSemaphore
    private let writer: GroupCommitWriter<PostgresConnection, NewRow, InsertAdmission.Decision>
    /// Where deliveryd's listeners wait (per schema: `PostgresNotify`).
    private let channel: String

    /// Run on every connection after it connects. idle_in_transaction_session_timeout: a node that froze or
    /// vanished while holding the counters row (every writer's batch holds it to its commit) has its transaction
    /// ended by the server after 5 s, so the other nodes' /async waits 5 s at most, not until TCP finds the node
    /// gone. This code never leaves a transaction idle: its statements follow each other. lock_timeout: past
    /// 10 s a batch fails at once (503 with Retry-After) rather than waiting out statement_timeout.
    static func sessionSettings(_ durability: Settings.Durability) -> [String] {
        [
            "SET synchronous_commit = \(durability == .full ? "on" : "off")", "SET statement_timeout = '30s'",
            "SET idle_in_transaction_session_timeout = '5s'", "SET lock_timeout = '10s'",
        ]
    }

    /// Connects to `url` (a libpq connection URI or keyword string) and migrates the schema if needed.
    /// `durability` as for SQLiteStore: `full` waits for every commit's WAL flush (`synchronous_commit = on`, the
    /// front door's 202); `normal` (deliveryd's) does not: a commit lost with the server can only be repeated,
    /// never lose a job.
    /// `bound` as for SQLiteStore: whether this store sets the size bound or follows the stored one.
    public init(url: String, durability: Settings.Durability = .full, bound sizeBound: SizeBound? = nil, connections: Int = 8) throws {
        self.url = url
        // A statement stuck behind a lock (or a server in trouble) fails after 30 s rather than holding a
        // request thread forever; see sessionSettings.
        sessionSettings = Self.sessionSettings(durability)
        self.sizeBound = sizeBound
        slots = DispatchSemaphore(value: max(1, connections))
        let writeConnection = try PostgresConnection(url: url, sessionSettings: sessionSettings)
        try PostgresSchema.migrate(writeConnection)
        channel = try PostgresNotify.channel(writeConnection)
        switch sizeBound {
        case nil: break
        case .sets(let bytes):
            try writeConnection.query(
                "INSERT INTO settings(key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [.text(SizeBound.settingKey), .text(String(bytes))])
            bound.store(bytes, ordering: .relaxed)
        case .follows(let fallback):
            bound.store(try Self.storedBound(writeConnection) ?? fallback, ordering: .relaxed)
        }
        let limit: Int64? = if case .sets(let bytes) = sizeBound { bytes } else { nil }
        writer = GroupCommitWriter(db: writeConnection) { [channel] db, rows in
            let decisions = try Self.insert(db, rows, bound: limit)
            // One notification for the batch, at its commit, whatever the number of jobs in it.
            let jobQueued = zip(rows, decisions).contains { row, decision in
                if case .job = row.kind, case .insert = decision { true } else { false }
            }
            if jobQueued { db.notifyAtCommit = channel }
            return decisions.map { .success($0) }
        }
    }

    deinit { writer.stop() }

    /// Stops the group-commit thread after it has committed what is queued.
    public func close() { writer.stop() }

    private static func storedBound(_ db: PostgresConnection) throws -> Int64? {
        try db.query("SELECT value FROM settings WHERE key = $1", [.text(SizeBound.settingKey)]).first?.text(0).flatMap { Int64($0) }
    }

    @discardableResult
    private func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        slots.wait()
        defer { slots.signal() }
        let db = try pool.withLock { $0.popLast() } ?? PostgresConnection(url: url, sessionSettings: sessionSettings)
        // Kept even when broken: it reconnects on its next statement.
        defer { pool.withLock { $0.append(db) } }
        return try body(db)
    }

    private func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try withConnection { db in try db.transaction { try body(db) } }
    }

    /// Goes through the group-commit writer and back: true proves its loop is turning (systemd's watchdog
    /// asks). Blocks while the writer is stuck.
    public func writerResponds() -> Bool {
        (try? writer.submit { _ in true }) ?? false
    }

    // MARK: writes through the group commit

    /// Common table expressions that move every committed `counter_deltas` row into `counters` (as `totals`,
    /// the new values; no row when there was nothing to fold) and `client_storage` (`folded`: each client's
    /// sum). Run only under the counters lock, so two folds never meet.
    static let fold = """
        gone AS (DELETE FROM counter_deltas RETURNING client, backlog, stored, reserved),
        folded AS (SELECT client, sum(stored)::bigint AS stored FROM gone GROUP BY client),
        shares AS (INSERT INTO client_storage SELECT client, stored FROM folded WHERE stored <> 0
            ON CONFLICT(client) DO UPDATE SET bytes = client_storage.bytes + excluded.bytes),
        totals AS (UPDATE counters SET backlog = counters.backlog + t.backlog, stored = counters.stored + t.stored,
                reserved = counters.reserved + t.reserved
            FROM (SELECT sum(backlog) AS backlog, sum(stored) AS stored, sum(reserved) AS reserved FROM gone) t
            WHERE id = 1 AND t.backlog IS NOT NULL RETURNING counters.backlog, counters.stored, counters.reserved)
        """

    /// Folds the deltas when no writer holds the counters (they fold themselves): the deltas of a node that
    /// only delivers stay few. With `tidy`, also drops clients' rows that hold nothing.
    private static func settle(_ db: PostgresConnection, wait: Bool, tidy: Bool = false) throws {
        guard !(try db.query("SELECT 1 FROM counters WHERE id = 1 FOR UPDATE\(wait ? "" : " SKIP LOCKED")").isEmpty) else { return }
        try db.query("WITH \(fold) SELECT 1")
        if tidy { try db.query("DELETE FROM client_storage WHERE bytes <= 0") }
    }

    /// Throws `StoreFull` for a row refused for the size bound (and remembers the refusal for /status).
    private func refused(_ usage: StorageUsage) -> StoreFull {
        lastRefusal.withLock { $0 = .init(at: WallClock.nowMillis(), bytes: usage.usedBytes + usage.reservedBytes) }
        return StoreFull(message: "\(usage.usedBytes) bytes used and \(usage.reservedBytes) reserved of \(usage.boundBytes ?? 0)")
    }

    public func enqueue(
        _ job: NewJob, backlogLimit: Int, clientLimit: Int = .max, clientStorageLimit: Int64 = .max
    ) throws -> EnqueueOutcome {
        let (inputText, specText) = (job.input.text, job.spec.stored.text)
        let reserve = Int64(job.spec.resultBytesBound)
        let row = NewRow(
            kind: .job(job, spec: specText, backlogLimit: backlogLimit, clientLimit: clientLimit), input: inputText,
            bytes: Int64(inputText.utf8.count + specText.utf8.count) + reserve, reserve: reserve, clientStorageLimit: clientStorageLimit)
        switch try writer.submit(combined: row) {
        case .insert: return .accepted(id: job.id)
        case .answer(let outcome): return outcome
        case .storeFull(let usage): throw refused(usage)
        case .clientStorageFull(let stored): return .clientStorageFull(storedBytes: stored)
        }
    }

    public func recordSync(_ record: SyncRecord, clientStorageLimit: Int64 = .max) throws {
        let inputText = record.input.text
        let resultText = record.error == nil ? record.result.text : nil
        let row = NewRow(
            kind: .sync(record, result: resultText), input: inputText,
            bytes: Int64(inputText.utf8.count + (resultText ?? record.error ?? "").utf8.count), reserve: 0,
            clientStorageLimit: clientStorageLimit)
        switch try writer.submit(combined: row) {
        case .insert, .answer: return
        case .storeFull(let usage): throw refused(usage)
        case .clientStorageFull(let stored): throw ClientStorageFull(storedBytes: stored, limitBytes: clientStorageLimit)
        }
    }

    public func clientStorage(_ client: String) throws -> Int64 {
        try withConnection { db in
            try db.query(
                """
                SELECT (COALESCE((SELECT bytes FROM client_storage WHERE client = $1), 0)
                    + COALESCE((SELECT sum(stored) FROM counter_deltas WHERE client = $1), 0))::bigint
                """, [.text(client)]
            ).first?.int(0) ?? 0
        }
    }

    public func storageUsage() throws -> StorageUsage {
        try withConnection { db in
            if case .follows = sizeBound, let stored = try Self.storedBound(db) { bound.store(stored, ordering: .relaxed) }
            let limit = bound.load(ordering: .relaxed)
            let row = try db.query(
                """
                SELECT (c.stored + COALESCE(d.stored, 0))::bigint, (c.reserved + COALESCE(d.reserved, 0))::bigint FROM counters c,
                    (SELECT sum(stored) AS stored, sum(reserved) AS reserved FROM counter_deltas) d WHERE c.id = 1
                """
            ).first
            let (stored, reserved) = (row?.int(0) ?? 0, row?.int(1) ?? 0)
            return StorageUsage(
                usedBytes: max(0, stored - reserved), reservedBytes: max(0, reserved), boundBytes: limit > 0 ? limit : nil,
                refusal: lastRefusal.withLock { $0 })
        }
    }

    /// `DELETE … WHERE id IN (the first `limit`)`, counted.
    /// Then folds the deltas the deletes left and drops the clients left with nothing (after the writer's
    /// batch, if one holds the counters).
    private func deleteCounted(_ selection: String, _ bindings: [SQLValue]) throws -> Int {
        try withConnection { db in
            let count = Int(
                try db.query("WITH gone AS (DELETE FROM requests WHERE id IN (\(selection)) RETURNING 1) SELECT count(*) FROM gone", bindings)
                    .first?.int(0) ?? 0)
            if count > 0 { try db.transaction { try Self.settle(db, wait: true, tidy: true) } }
            return count
        }
    }

    public func pruneSyncRecords(limit: Int) throws -> Int {
        // Oldest first by id (UUIDv7, time-ordered).
        try deleteCounted("SELECT id FROM requests WHERE mode = 'sync' ORDER BY id LIMIT $1", [.int(Int64(limit))])
    }

    public func prune(finishedBefore before: UnixMillis, limit: Int) throws -> Int {
        // Finished means: completed or failed, and no longer being delivered (a redelivery resets it).
        try deleteCounted(
            """
            SELECT id FROM requests WHERE status IN ('completed', 'failed')
            AND COALESCE(delivered_at, completed_at, created_at) < $1 LIMIT $2
            """, [.int(before), .int(Int64(limit))])
    }

    // MARK: the queue

    public func claim(limit: Int, leaseMillis: Int64, now: UnixMillis, owner: String) throws -> [ClaimedJob] {
        try transaction { db in
            try db.query(
                """
                WITH due AS (
                    -- Fair turns, as in SQLite: every client's first unfinished job, then every client's second, ...
                    -- SKIP LOCKED: rows another node is claiming right now are passed over, not waited for.
                    SELECT id AS due_id FROM requests
                    WHERE \(Schema.unfinished) AND next_attempt_at <= $1 AND lease_until <= $1
                    ORDER BY turn, next_attempt_at LIMIT $3
                    FOR UPDATE SKIP LOCKED)
                UPDATE requests SET lease_until = $1 + $2, lease_owner = $4, leased_at = $1,
                    status = CASE status WHEN 'pending' THEN 'processing' ELSE status END,
                    started_at = COALESCE(started_at, $1)
                FROM due WHERE id = due_id
                RETURNING \(Rows.claimColumns)
                """,
                [.int(now), .int(leaseMillis), .int(Int64(limit)), .text(owner)]
            ).compactMap { row in
                try Rows.claimed(row, now: now) { id, failed in try Self.saveResult(db, id: id, owner: owner, failed) }
            }
        }
    }

    public func saveResult(id: String, owner: String, _ work: WorkResult) throws {
        try withConnection { db in try Self.saveResult(db, id: id, owner: owner, work) }
    }

    private static func saveResult(_ db: PostgresConnection, id: String, owner: String, _ work: WorkResult) throws {
        try db.query(
            """
            UPDATE requests SET status = 'delivering', result = $1, error = $2, completed_at = $3, duration_ms = $4, reserve = 0
            WHERE id = $5 AND status = 'processing' AND lease_owner = $6
            """,
            [
                work.result.map { .text($0.text) } ?? .null, work.error.map(SQLValue.text) ?? .null, .int(work.completedAt),
                .double(work.durationMs), .text(id), .text(owner),
            ])
    }

    public func recordAttempts(_ writes: [AttemptWrite], owner: String) throws {
        guard !writes.isEmpty else { return }
        try transaction { db in
            // An attempt whose request is gone (deleted by retention meanwhile) matches no row in writeAttempt's
            // owner-conditional update, so its attempt row (whose foreign key would fail the whole batch, retried
            // forever) is never inserted; the update's row lock holds a row it matched against a delete.
            for write in writes {
                if let work = write.computed { try Self.saveResult(db, id: write.id, owner: owner, work) }
                try Self.writeAttempt(db, id: write.id, owner: owner, attempt: write.attempt, outcome: write.outcome)
            }
        }
    }

    /// The row first, by its owner: the attempt is recorded only when the row was still `owner`'s, so a
    /// stale attempt never takes the number of the new owner's (ON CONFLICT DO NOTHING would drop that one).
    private static func writeAttempt(
        _ db: PostgresConnection, id: String, owner: String, attempt: AttemptRecord, outcome: AttemptOutcome
    ) throws {
        let owned: Bool
        switch outcome {
        case .delivered:
            // A job whose work failed still reports that failure by callback; it ends `failed`.
            owned = !(try db.query(
                """
                UPDATE requests SET status = CASE WHEN error IS NULL THEN 'completed' ELSE 'failed' END,
                    attempts = $1, delivered_at = $2, next_attempt_at = NULL, lease_until = 0
                WHERE id = $3 AND lease_owner = $4 RETURNING id
                """, [.int(Int64(attempt.n)), .int(attempt.at), .text(id), .text(owner)]).isEmpty)
        case .retry(let at):
            owned = !(try db.query(
                "UPDATE requests SET attempts = $1, next_attempt_at = $2, lease_until = 0 WHERE id = $3 AND lease_owner = $4 RETURNING id",
                [.int(Int64(attempt.n)), .int(at), .text(id), .text(owner)]).isEmpty)
        case .giveUp(let reason):
            owned = !(try db.query(
                """
                UPDATE requests SET status = 'failed', attempts = $1, delivery_error = $2, next_attempt_at = NULL, lease_until = 0
                WHERE id = $3 AND lease_owner = $4 RETURNING id
                """, [.int(Int64(attempt.n)), .text(reason), .text(id), .text(owner)]).isEmpty)
        }
        guard owned else { return }
        try db.query(
            """
            INSERT INTO attempts(request_id, n, at, duration_ms, http_status, error, next_attempt_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
            """,
Rows.attemptBindings(id, attempt))
    }

    public func release(id: String, owner: String) throws {
        try withConnection { db in
            try db.query("UPDATE requests SET lease_until = 0 WHERE id = $1 AND lease_owner = $2", [.text(id), .text(owner)])
        }
    }

    /// nil takes back every lease, other nodes' too: only for a deliveryd that knows it is alone.
    public func releaseLeases(owner: String?) throws -> Int {
        try transaction { db in
            let bindings: [SQLValue] = owner.map { [.text($0)] } ?? []
            try db.query("UPDATE chores SET until = 0\(owner == nil ? "" : " WHERE node = $1")", bindings)
            return try db.query(
                """
                UPDATE requests SET lease_until = 0
                WHERE lease_until > 0 AND status IN ('processing', 'delivering')\(owner == nil ? "" : " AND lease_owner = $1") RETURNING id
                """, bindings
            ).count
        }
    }

    public func postpone(id: String, owner: String, until: UnixMillis) throws {
        try withConnection { db in
            try db.query(
                "UPDATE requests SET next_attempt_at = $1, lease_until = 0 WHERE id = $2 AND lease_owner = $3", [.int(until), .text(id), .text(owner)])
        }
    }

    public func redeliver(id: String, now: UnixMillis) throws -> RedeliverOutcome {
        try transaction { db in
            guard let row = try db.query("SELECT status FROM requests WHERE id = $1 AND mode = 'async' FOR UPDATE", [.text(id)]).first,
                let status = row.text(0).flatMap(JobStatus.init(rawValue:))
            else { return .notFound }
            guard status == .completed || status == .failed else { return .notFinished(status) }
            try db.query(
                """
                UPDATE requests SET status = 'delivering', attempt_base = attempts, next_attempt_at = $1, lease_until = 0,
                    delivery_error = NULL, delivered_at = NULL
                WHERE id = $2
                """, [.int(now), .text(id)])
            // An operator on one node wakes deliveryd on every node.
            db.notifyAtCommit = channel
            return .requeued
        }
    }

    public func redeliverFailed(_ selection: BulkRedeliver, now: UnixMillis) throws -> BulkRedeliverResult {
        try transaction { db in
            // Read a page at a time without locking (BulkRedeliver.take), then lock only the rows taken: the
            // UPDATE re-checks `failed`, so a second node's call that chose the same job waits for this one and
            // then finds it delivering (READ COMMITTED re-evaluates the row it locked): no job is taken twice.
            let chosen = try selection.take { after, count in
                var bindings: [SQLValue] = [.int(selection.window.lowerBound), .int(selection.window.upperBound), .text(after)]
                var host = ""
                if let like = selection.likePattern { (host, bindings) = (" AND lower(callback_url) LIKE $4", bindings + [.text(like)]) }
                return try db.query(
                    """
                    SELECT id, created_at, callback_url FROM requests
                    WHERE status = 'failed' AND mode = 'async' AND created_at >= $1 AND created_at < $2 AND id > $3\(host)
                    ORDER BY id LIMIT \(count)
                    """, bindings
                ).compactMap { row in row.text(0).map { ($0, row.int(1) ?? 0, row.text(2)) } }
            }
            var requeued: [String] = []
            for id in chosen.requeued {
                let rows = try db.query(
                    """
                    UPDATE requests SET status = 'delivering', attempt_base = attempts, next_attempt_at = $1, lease_until = 0,
                        delivery_error = NULL, delivered_at = NULL
                    WHERE id = $2 AND status = 'failed' RETURNING id
                    """, [.int(now), .text(id)])
                if !rows.isEmpty { requeued.append(id) }
            }
            if !requeued.isEmpty { db.notifyAtCommit = channel }
            return BulkRedeliverResult(requeued: requeued, more: chosen.more)
        }
    }

    // MARK: reads

    public func request(id: String) throws -> RequestRecord? {
        try withConnection { db in
            guard let row = try db.query("SELECT \(Rows.recordColumns) FROM requests WHERE id = $1", [.text(id)]).first,
                var record = Rows.record(row)
            else { return nil }
            record.trace = try db.query(
                "SELECT \(Rows.attemptColumns) FROM attempts WHERE request_id = $1 ORDER BY n", [.text(id)]
            ).map(Rows.attempt)
            return record
        }
    }

    public func requests(_ query: RequestQuery) throws -> [RequestRecord] {
        var conditions: [String] = []
        var bindings: [SQLValue] = []
        func bind(_ condition: String, _ value: SQLValue) {
            bindings.append(value)
            conditions.append(condition + "$\(bindings.count)")
        }
        if let mode = query.mode { bind("mode = ", .text(mode.rawValue)) }
        if let status = query.status { bind("status = ", .text(status.rawValue)) }
        if let before = query.before { bind("id < ", .text(before)) }
        bindings.append(.int(Int64(query.limit)))
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return try withConnection { db in
            try db.query("SELECT \(Rows.recordColumns) FROM requests \(whereClause) ORDER BY id DESC LIMIT $\(bindings.count)", bindings)
                .compactMap(Rows.record)
        }
    }

    public func backlog() throws -> Int {
        try withConnection { db in
            Int(try db.query("SELECT (backlog + COALESCE((SELECT sum(backlog) FROM counter_deltas), 0))::bigint FROM counters WHERE id = 1").first?.int(0) ?? 0)
        }
    }

    public func jobsInHand(now: UnixMillis, limit: Int) throws -> [JobInHand] {
        try withConnection { db in
            try db.query(
                """
                SELECT \(Rows.inHandColumns) FROM requests
                WHERE status IN ('processing', 'delivering') AND lease_until > $1 LIMIT $2
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
                SELECT at / 60000, count(*) FROM attempts WHERE at >= $1
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
        try transaction { db in
            try db.query(
                """
                INSERT INTO nodes(\(Rows.nodeColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT(id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = excluded.stopped_at,
                    active_workers = excluded.active_workers, circuits = excluded.circuits, stats = excluded.stats
                """,
                [
                    .text(node.id), .text(node.name), .int(Int64(node.pid)), .int(node.startedAt), .int(node.heartbeatAt),
                    node.stoppedAt.map(SQLValue.int) ?? .null, .int(Int64(node.activeWorkers)), .text(Rows.circuitsText(node.circuits)),
                    .text(node.stats.json.text),
                ])
            guard node.stoppedAt == nil else { return LeaseRenewal() }
            var renewal = LeaseRenewal()
            if !renew.isEmpty {
                // By primary key (an array of the ids in hand): the cost follows the jobs in hand, not the table.
                // SKIP LOCKED: a row locked now is its worker's result or attempt being written; waiting for it
                // made every other worker's next write wait for this heartbeat's commit (one renewal of 426
                // leases took 853 ms, nearly all of it behind those writes, and results 1 s behind it). A
                // lease skipped is renewed by the next heartbeat, a second later.
                let ids = "{" + renew.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
                    .joined(separator: ",") + "}"
                renewal.renewed = try db.query(
                    """
                    WITH mine AS (
                        SELECT id AS mine_id FROM requests
                        WHERE id = ANY($4::text::text[]) AND lease_owner = $3 AND lease_until > $1
                        FOR UPDATE SKIP LOCKED)
                    UPDATE requests SET lease_until = $1 + $2 FROM mine WHERE id = mine_id RETURNING id
                    """, [.int(now), .int(leaseMillis), .text(node.id), .text(ids)]
                ).compactMap { $0.text(0) }
                // A plain read, no lock: a row another node is claiming right now still reads as this node's,
                // and shows as lost at the next heartbeat.
                let mine = Set(
                    try db.query("SELECT id FROM requests WHERE id = ANY($1::text::text[]) AND lease_owner = $2", [.text(ids), .text(node.id)])
                        .compactMap { $0.text(0) })
                renewal.lost = renew.filter { !mine.contains($0) }
            }
            // Last, so the counters are held (when free) only until this commit.
            try Self.settle(db, wait: false)
            return renewal
        }
    }

    public func nodes() throws -> [NodeStatus] {
        try withConnection { db in
            try db.query("SELECT \(Rows.nodeColumns) FROM nodes ORDER BY name, started_at, id").map(Rows.node)
        }
    }

    public func pruneNodes(before: UnixMillis) throws -> Int {
        try withConnection { db in
            try db.query("DELETE FROM nodes WHERE heartbeat_at < $1 RETURNING id", [.int(before)]).count
        }
    }

    public func takeChore(_ chore: Chore, node: String, until: UnixMillis, now: UnixMillis) throws -> Bool {
        try withConnection { db in
            // ON CONFLICT locks the row: of two nodes asking together, the second sees the first's `until`.
            !(try db.query(
                """
                INSERT INTO chores(name, node, until) VALUES ($1, $2, $3)
                ON CONFLICT(name) DO UPDATE SET node = excluded.node, until = excluded.until
                WHERE chores.node = excluded.node OR chores.until <= $4
                RETURNING node
                """, [.text(chore.rawValue), .text(node), .int(until), .int(now)]
            ).isEmpty)
        }
    }

    public func rescue(nodeTimeoutMillis: Int64, now: UnixMillis) throws -> [Rescue] {
        try transaction { db in
            let owners = try db.query(
                """
                UPDATE requests SET lease_until = 0
                WHERE status IN ('processing', 'delivering') AND lease_until > $1
                AND lease_owner NOT IN (SELECT id FROM nodes WHERE \(NodeStatus.aliveSQL(now: "$1", timeout: "$2")))
                RETURNING lease_owner
                """, [.int(now), .int(nodeTimeoutMillis)]
            ).compactMap { $0.text(0) }
            guard !owners.isEmpty else { return [] }
            // Due again at once: every node's claim loop is woken for them, not left to its poll.
            db.notifyAtCommit = channel
            let names = Dictionary(
                try db.query("SELECT id, name FROM nodes").compactMap { row in row.text(0).map { ($0, row.text(1) ?? "") } },
                uniquingKeysWith: { a, _ in a })
            return Rows.rescues(owners, names: names)
        }
    }
}
