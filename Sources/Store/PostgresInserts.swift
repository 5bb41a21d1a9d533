import Foundation
import WorkEngine

/// A new row for `requests` that PostgreSQL's group-commit writer inserts with the rest of its batch: an
/// /async job or a /sync record, with the bounds it must meet. Serialized on the request's thread.
struct NewRow: Sendable {
    enum Kind: Sendable {
        case job(NewJob, spec: String, backlogLimit: Int, clientLimit: Int)
        case sync(SyncRecord, result: String?)
    }
    var kind: Kind
    var input: String
    /// What it counts against the size bound and its client: input, spec, result, reserve.
    var bytes: Int64
    /// What an async job holds for its result until the result is written.
    var reserve: Int64
    var clientStorageLimit: Int64

    var id: String {
        switch kind {
        case .job(let job, _, _, _): job.id
        case .sync(let record, _): record.id
        }
    }

    var client: String {
        switch kind {
        case .job(let job, _, _, _): job.client
        case .sync(let record, _): record.client
        }
    }

    var idempotencyKey: String? { if case .job(let job, _, _, _) = kind { job.idempotencyKey } else { nil } }
}

/// Which of a batch's new rows go in, decided in order against what the database held once the batch took
/// the counters lock, plus the rows admitted before them in the same batch: the checks, and their order, of
/// one enqueue at a time (as SQLiteStore.enqueue). Pure: `PostgresStore` reads the state and writes the rows.
struct InsertAdmission: Equatable {
    /// A client's stored bytes and the span of its unfinished jobs' turns.
    struct Client: Equatable {
        var bytes: Int64 = 0
        var lowTurn: Int64?
        var highTurn: Int64?
    }

    /// The job that holds an idempotency key.
    struct KeyHolder: Equatable {
        var id: String
        var createdAt: UnixMillis
        var input: String
    }

    enum Decision: Equatable {
        /// Written, at this turn (an async job's; nil for a sync record).
        case insert(turn: Int64?)
        /// Nothing written: the answer (a duplicate, a bound).
        case answer(EnqueueOutcome)
        /// Nothing written: the size bound, with what was used and reserved.
        case storeFull(StorageUsage)
        /// Nothing written: a sync record past its client's share.
        case clientStorageFull(storedBytes: Int64)
    }

    var backlog: Int
    /// `boundBytes` nil when this store does not set the bound (it then never refuses for it).
    var usage: StorageUsage
    var clients: [String: Client]
    var keys: [String: KeyHolder]
    /// Jobs holding a key for more than a day, whose key is given up (set to NULL) before the batch's insert.
    private(set) var keysReleased: [String] = []

    static let keyLifetime: UnixMillis = 24 * 3600 * 1000

    init(backlog: Int, usage: StorageUsage, clients: [String: Client], keys: [String: KeyHolder]) {
        (self.backlog, self.usage, self.clients, self.keys) = (backlog, usage, clients, keys)
    }

    mutating func admit(_ row: NewRow) -> Decision {
        var client = clients[row.client] ?? Client()
        switch row.kind {
        case .job(let job, _, let backlogLimit, let clientLimit):
            if let key = job.idempotencyKey, let holder = keys[key] {
                if holder.createdAt > job.createdAt - Self.keyLifetime {
                    return .answer(holder.input == row.input ? .duplicate(id: holder.id) : .keyReused(id: holder.id))
                }
                // Older than a day: the key may be used again.
                keysReleased.append(holder.id)
                keys[key] = nil
            }
            guard backlog < backlogLimit else { return .answer(.backlogFull(depth: backlog)) }
            let open = client.lowTurn.flatMap { l in client.highTurn.map { Int($0 - l + 1) } } ?? 0
            guard open < clientLimit else { return .answer(.clientBacklogFull(depth: open)) }
            guard usage.admits(row.bytes) else { return .storeFull(usage) }
            guard client.bytes + row.bytes <= row.clientStorageLimit else { return .answer(.clientStorageFull(storedBytes: client.bytes)) }
            let turn = client.highTurn.map { $0 + 1 } ?? 0
            (client.lowTurn, client.highTurn) = (client.lowTurn ?? turn, turn)
            backlog += 1
            if let key = job.idempotencyKey { keys[key] = KeyHolder(id: job.id, createdAt: job.createdAt, input: row.input) }
            admitted(row, client)
            return .insert(turn: turn)
        case .sync:
            guard usage.admits(row.bytes) else { return .storeFull(usage) }
            guard client.bytes + row.bytes <= row.clientStorageLimit else { return .clientStorageFull(storedBytes: client.bytes) }
            admitted(row, client)
            return .insert(turn: nil)
        }
    }

    private mutating func admitted(_ row: NewRow, _ client: Client) {
        var client = client
        client.bytes += row.bytes
        clients[row.client] = client
        usage.usedBytes += row.bytes - row.reserve
        usage.reservedBytes += row.reserve
    }
}

/// A PostgreSQL array literal (`{"a","b\"c",NULL}`) of `values`, for one `$n::text[]` parameter: every
/// element quoted and escaped, so any text goes through as sent.
func postgresArray(_ values: [String?]) -> String {
    let (quote, backslash) = (UInt8(ascii: "\""), UInt8(ascii: "\\"))
    var out: [UInt8] = [UInt8(ascii: "{")]
    out.reserveCapacity(values.reduce(2) { $0 + ($1?.utf8.count ?? 4) + 3 })
    for (i, value) in values.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        guard let value else {
            out += "NULL".utf8
            continue
        }
        // Byte by byte: both escaped characters are ASCII, which never occurs inside a UTF-8 sequence.
        out.append(quote)
        for byte in value.utf8 {
            if byte == quote || byte == backslash { out.append(backslash) }
            out.append(byte)
        }
        out.append(quote)
    }
    out.append(UInt8(ascii: "}"))
    return String(decoding: out, as: UTF8.self)
}

extension PostgresStore {
    /// Every new row of one group-commit batch, in a fixed number of statements however many there are
    /// (each statement is a round trip to the server's process): the counters row locked once, the deltas
    /// folded in and every client's share and turns read in one statement, every idempotency key in one, the
    /// decisions made here, and the rows written in one multi-row INSERT whose statement-level trigger updates
    /// the counters once.
    static func insert(_ db: PostgresConnection, _ rows: [NewRow], bound: Int64?) throws -> [InsertAdmission.Decision] {
        // Held until the batch commits: every node's writes take turns here, so the bounds hold across nodes.
        // Alone, first: the fold updates client_storage rows, which another node's writer may hold until its
        // commit, and only the holder of the counters lock may wait for them.
        let locked = try db.query("SELECT backlog, stored, reserved FROM counters WHERE id = 1 FOR UPDATE").first
        // Statements of their own, after the lock: READ COMMITTED reads a statement's rows as of its start, and
        // only the locked row is read again once the lock is granted (read in the locking statement, the
        // clients' rows missed what the node that held the lock had just committed: 12 turns under a bound of 7).
        // The turns as ORDER BY … LIMIT 1, not min()/max(): the statement is prepared once, and a generic plan
        // made while the table looked empty aggregated over every unfinished row of the client (1.05 ms a row
        // at 1,300 open jobs: /async at 459 req/s); the ordered form is one index probe whatever the statistics.
        // The statement sees client_storage as before its own fold: each client's folded bytes are added.
        var clients: [String: InsertAdmission.Client] = [:]
        var totals: (backlog: Int64, stored: Int64, reserved: Int64)?
        let names = Array(Set(rows.map(\.client)))
        for row in try db.query(
            """
            WITH \(fold)
            SELECT c.client,
                COALESCE((SELECT bytes FROM client_storage s WHERE s.client = c.client), 0)
                    + COALESCE((SELECT stored FROM folded f WHERE f.client = c.client), 0),
                (SELECT turn FROM requests r WHERE r.client = c.client AND \(Schema.unfinished) ORDER BY turn LIMIT 1),
                (SELECT turn FROM requests r WHERE r.client = c.client AND \(Schema.unfinished) ORDER BY turn DESC LIMIT 1),
                (SELECT backlog FROM totals), (SELECT stored FROM totals), (SELECT reserved FROM totals)
            FROM unnest($1::text[]) AS c(client)
            """, [.text(postgresArray(names))])
        {
            guard let name = row.text(0) else { continue }
            clients[name] = .init(bytes: row.int(1) ?? 0, lowTurn: row.int(2), highTurn: row.int(3))
            if let backlog = row.int(4) { totals = (backlog, row.int(5) ?? 0, row.int(6) ?? 0) }
        }
        // The totals after the fold, or the locked row as it was when there was nothing to fold.
        let counters = totals ?? (locked?.int(0) ?? 0, locked?.int(1) ?? 0, locked?.int(2) ?? 0)
        var keys: [String: InsertAdmission.KeyHolder] = [:]
        let wanted = Array(Set(rows.compactMap(\.idempotencyKey)))
        if !wanted.isEmpty {
            for row in try db.query(
                "SELECT idempotency_key, id, created_at, input FROM requests WHERE idempotency_key = ANY($1::text[])",
                [.text(postgresArray(wanted))])
            {
                guard let key = row.text(0), let id = row.text(1) else { continue }
                keys[key] = .init(id: id, createdAt: row.int(2) ?? 0, input: row.text(3) ?? "")
            }
        }
        let (stored, reserved) = (counters.stored, counters.reserved)
        var admission = InsertAdmission(
            backlog: Int(counters.backlog),
            usage: StorageUsage(usedBytes: max(0, stored - reserved), reservedBytes: max(0, reserved), boundBytes: bound),
            clients: clients, keys: keys)
        let decisions = rows.map { admission.admit($0) }
        if !admission.keysReleased.isEmpty {
            try db.query("UPDATE requests SET idempotency_key = NULL WHERE id = ANY($1::text[])", [.text(postgresArray(admission.keysReleased))])
        }
        var columns = Array(repeating: [String?](), count: 18)
        for (row, decision) in zip(rows, decisions) {
            guard case .insert(let turn) = decision else { continue }
            let values: [String?]
            switch row.kind {
            case .job(let job, let spec, _, _):
                values = [
                    job.id, "async", job.spec.op.rawValue, "pending", row.input, nil, nil, job.callbackURL, job.idempotencyKey,
                    String(job.createdAt), nil, nil, nil, String(job.createdAt), job.client, String(turn ?? 0), spec, String(row.reserve),
                ]
            case .sync(let record, let result):
                values = [
                    record.id, "sync", record.op.rawValue, record.error == nil ? "completed" : "failed", row.input, result, record.error, nil,
                    nil, String(record.createdAt), String(record.startedAt), String(record.completedAt), "\(record.durationMs)", nil,
                    record.client, "0", nil, "0",
                ]
            }
            for (i, value) in values.enumerated() { columns[i].append(value) }
        }
        guard !columns[0].isEmpty else { return decisions }
        try db.query(
            """
            INSERT INTO requests(id, mode, op, status, input, result, error, callback_url, idempotency_key, created_at, started_at,
                completed_at, duration_ms, next_attempt_at, client, turn, spec, reserve)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::float8[], $14::bigint[], $15::text[], $16::bigint[],
                $17::text[], $18::bigint[])
            """, columns.map { .text(postgresArray($0)) })
        return decisions
    }
}
