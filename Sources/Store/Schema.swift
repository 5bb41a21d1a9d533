/// The schema, as numbered migrations applied in order and tracked in `PRAGMA user_version`.
import JSON
import WorkEngine

enum Schema {
    static let migrations: [String] = [
        """
        CREATE TABLE requests(
            id TEXT PRIMARY KEY,              -- UUIDv7: time-ordered, so ids page by time
            mode TEXT NOT NULL,               -- sync | async
            op TEXT NOT NULL,
            status TEXT NOT NULL,             -- pending | processing | delivering | completed | failed
            input TEXT NOT NULL,
            result TEXT,
            error TEXT,                       -- why the work failed
            callback_url TEXT,
            delivery_error TEXT,              -- why delivery gave up
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER,          -- unix ms; when deliveryd should look at it next
            lease_until INTEGER NOT NULL DEFAULT 0,
            idempotency_key TEXT UNIQUE,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            completed_at INTEGER,
            delivered_at INTEGER,
            duration_ms REAL
        ) STRICT;
        CREATE INDEX requests_due ON requests(next_attempt_at)
            WHERE status IN ('pending', 'processing', 'delivering');
        CREATE INDEX requests_backlog ON requests(status) WHERE status IN ('pending', 'processing');
        CREATE INDEX requests_by_mode ON requests(mode, id);
        CREATE INDEX requests_by_status ON requests(status, id);
        CREATE TABLE attempts(
            request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            at INTEGER NOT NULL,
            duration_ms REAL NOT NULL,
            http_status INTEGER,
            error TEXT,
            next_attempt_at INTEGER,
            PRIMARY KEY(request_id, n)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE daemon(
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            active_workers INTEGER NOT NULL,
            heartbeat_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
        """,
        // 2: redelivery starts a fresh attempt series; deliveryd publishes its circuit breakers.
        """
        ALTER TABLE requests ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE daemon ADD COLUMN circuits TEXT NOT NULL DEFAULT '[]';
        """,
        // 3: who submitted each job, for the per-client bound.
        """
        ALTER TABLE requests ADD COLUMN client TEXT NOT NULL DEFAULT '';
        CREATE INDEX requests_open_by_client ON requests(client) WHERE status IN ('pending', 'processing', 'delivering');
        """,
        // 4: each job's turn among its client's unfinished jobs (0, 1, 2, ...): claims go by turn (every client's
        // first job, then every client's second, ...), and the span of a client's turns bounds its backlog.
        """
        ALTER TABLE requests ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
        DROP INDEX requests_open_by_client;
        CREATE INDEX requests_client_turns ON requests(client, turn) WHERE status IN ('pending', 'processing', 'delivering');
        CREATE INDEX requests_turns ON requests(turn, next_attempt_at) WHERE status IN ('pending', 'processing', 'delivering');
        """,
        // 5: the backlog (pending + processing) kept as a number by triggers, so the bound checked on every
        // enqueue costs one row read instead of a count of the whole backlog (8 ms at 100,000).
        """
        CREATE TABLE backlog(id INTEGER PRIMARY KEY CHECK (id = 1), jobs INTEGER NOT NULL) STRICT;
        INSERT INTO backlog VALUES (1, (SELECT count(*) FROM requests WHERE status IN ('pending', 'processing')));
        CREATE TRIGGER backlog_insert AFTER INSERT ON requests WHEN new.status IN ('pending', 'processing')
            BEGIN UPDATE backlog SET jobs = jobs + 1; END;
        CREATE TRIGGER backlog_delete AFTER DELETE ON requests WHEN old.status IN ('pending', 'processing')
            BEGIN UPDATE backlog SET jobs = jobs - 1; END;
        CREATE TRIGGER backlog_update AFTER UPDATE OF status ON requests
            WHEN (old.status IN ('pending', 'processing')) != (new.status IN ('pending', 'processing'))
            BEGIN UPDATE backlog SET jobs = jobs + CASE WHEN new.status IN ('pending', 'processing') THEN 1 ELSE -1 END; END;
        """,
        // 6: the validated job (JobSpec.stored), written at accept time, so deliveryd never parses a request again.
        // Jobs accepted before it get theirs from the fix-up below.
        """
        ALTER TABLE requests ADD COLUMN spec TEXT;
        """,
        // 7: deliveryd's counters ride on its heartbeat, for workfcgi's /metrics.
        """
        ALTER TABLE daemon ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
        """,
        // 8: two indexes no query uses any more (claims walk requests_turns, the backlog is a counter since 5),
        // but every insert and every status change paid for.
        """
        DROP INDEX IF EXISTS requests_due;
        DROP INDEX IF EXISTS requests_backlog;
        """,
        // 9: the same partial indexes with a condition SQLite checks by comparing: an IN list of three values
        // is built into a temporary b-tree for every insert and every status change that touches them (an
        // insert took 22 us with the IN lists and 7.5 us without; status updates 21.7 and 8.8 us). An unfinished
        // job is one that is neither completed nor failed. Queries name the same condition to use the indexes.
        """
        DROP INDEX requests_client_turns;
        DROP INDEX requests_turns;
        CREATE INDEX requests_client_turns ON requests(client, turn) WHERE \(Self.unfinished);
        CREATE INDEX requests_turns ON requests(turn, next_attempt_at) WHERE \(Self.unfinished);
        """,
        // 10: storage per client, for WORKFCGI_CLIENT_STORAGE_LIMIT, kept by triggers in the same transaction as
        // every insert, result and delete; and `reserve`, what an unfinished async job holds for its result
        // (JobSpec.resultBytesBound) until the result is written, summed in `reserved` for the size bound.
        """
        ALTER TABLE requests ADD COLUMN reserve INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE client_storage(client TEXT PRIMARY KEY, bytes INTEGER NOT NULL) STRICT, WITHOUT ROWID;
        INSERT INTO client_storage SELECT client, sum(\(Self.size("requests"))) FROM requests GROUP BY client;
        CREATE TABLE reserved(id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL) STRICT;
        INSERT INTO reserved VALUES (1, 0);
        CREATE TRIGGER storage_insert AFTER INSERT ON requests BEGIN
            INSERT INTO client_storage VALUES (new.client, \(Self.size("new")))
                ON CONFLICT(client) DO UPDATE SET bytes = bytes + excluded.bytes;
            UPDATE reserved SET bytes = bytes + new.reserve WHERE new.reserve <> 0;
        END;
        CREATE TRIGGER storage_update AFTER UPDATE OF input, spec, result, reserve ON requests BEGIN
            UPDATE client_storage SET bytes = bytes + (\(Self.size("new"))) - (\(Self.size("old"))) WHERE client = new.client;
            UPDATE reserved SET bytes = bytes + new.reserve - old.reserve WHERE new.reserve <> old.reserve;
        END;
        CREATE TRIGGER storage_delete AFTER DELETE ON requests BEGIN
            UPDATE client_storage SET bytes = bytes - (\(Self.size("old"))) WHERE client = old.client;
            DELETE FROM client_storage WHERE client = old.client AND bytes <= 0;
            UPDATE reserved SET bytes = bytes - old.reserve WHERE old.reserve <> 0;
        END;
        """,
        // 11: failed callback attempts per minute for /ui's graph of the last hour: a range over the index, not
        // a read of every attempt.
        """
        CREATE INDEX attempts_at ON attempts(at);
        """,
        // 12: any number of deliveryd nodes (PostgreSQL's migration 3, the same tables): each lease has an owner
        // (a node's id) and the time of its claim (renewals move lease_until, not leased_at); one row per node
        // start instead of the one daemon row; one row per chore, held by one node at a time.
        Self.nodes(integer: "INTEGER", strict: " STRICT"),
    ]

    /// Schema 12 (PostgreSQL 3): the tables of nodes and chores, spelled for either database.
    static func nodes(integer: String, strict: String) -> String {
        """
        ALTER TABLE requests ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
        ALTER TABLE requests ADD COLUMN leased_at \(integer) NOT NULL DEFAULT 0;
        DROP TABLE daemon;
        CREATE TABLE nodes(
            id TEXT PRIMARY KEY,              -- one per start: the lease owner
            name TEXT NOT NULL,               -- WORKFCGI_NODE_NAME
            pid INTEGER NOT NULL,
            started_at \(integer) NOT NULL,
            heartbeat_at \(integer) NOT NULL,
            stopped_at \(integer),             -- a clean stop
            active_workers INTEGER NOT NULL,
            circuits TEXT NOT NULL DEFAULT '[]',
            stats TEXT NOT NULL DEFAULT '{}'
        )\(strict);
        CREATE TABLE chores(name TEXT PRIMARY KEY, node TEXT NOT NULL, until \(integer) NOT NULL)\(strict);
        """
    }

    /// A failed callback attempt: no 2xx answer, or an error (the same spelling in both stores).
    static let failedAttempt = "(error IS NOT NULL OR http_status IS NULL OR http_status < 200 OR http_status > 299)"

    /// What a row counts against its client (schema 10): input, job spec and result in bytes, and the reserve.
    static func size(_ row: String) -> String {
        """
        length(CAST(\(row).input AS BLOB)) + COALESCE(length(CAST(\(row).spec AS BLOB)), 0) \
        + COALESCE(length(CAST(\(row).result AS BLOB)), 0) + \(row).reserve
        """
    }

    /// The partial indexes' condition (schema 9), spelled exactly so in the queries that use them.
    static let unfinished = "status <> 'completed' AND status <> 'failed'"

    /// Data steps that SQL cannot do, run right after the migration of the same number.
    static let fixups: [Int: @Sendable (Database) throws -> Void] = [
        6: { db in
            // Unrun jobs from before migration 6: their input was valid when accepted. One that no longer
            // parses keeps a NULL spec, and is delivered as failed (the claim reports why).
            for row in try db.query("SELECT id, input FROM requests WHERE spec IS NULL AND mode = 'async' AND result IS NULL AND error IS NULL") {
                guard let id = row.text(0), let input = row.text(1).flatMap({ try? JSONValue.parse(Array($0.utf8)) }),
                    let parsed = try? RequestParser.parse(input, mode: .async)
                else { continue }
                try db.query("UPDATE requests SET spec = ? WHERE id = ?", [.text(parsed.spec.stored.text), .text(id)])
            }
        },
    ]

    /// Brings `db` to the newest schema. Safe to run from several processes at once: the version is read
    /// and advanced inside one write transaction.
    static func migrate(_ db: Database) throws {
        try db.transaction {
            let version = Int(try db.query("PRAGMA user_version").first?.int(0) ?? 0)
            for (i, sql) in migrations.enumerated() where i >= version {
                try db.execute(sql)
                try fixups[i + 1]?(db)
                try db.execute("PRAGMA user_version = \(i + 1)")
            }
        }
    }
}
