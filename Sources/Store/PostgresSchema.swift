/// PostgreSQL's schema: numbered migrations tracked in `schema_version`, applied under an advisory lock so
/// nodes that start together migrate once. The same tables and columns as SQLite's newest schema (Schema),
/// with the counters SQLite keeps in three tables kept in one row here.
enum PostgresSchema {
    /// pg_advisory_xact_lock's key for migrations (any fixed number; "wfcg" in ASCII).
    static let migrationLock: Int64 = 0x7766_6367

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
            attempt_base INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT,           -- unix ms; when deliveryd should look at it next
            lease_until BIGINT NOT NULL DEFAULT 0,
            idempotency_key TEXT UNIQUE,      -- unique across every node: the database decides
            created_at BIGINT NOT NULL,
            started_at BIGINT,
            completed_at BIGINT,
            delivered_at BIGINT,
            duration_ms DOUBLE PRECISION,
            client TEXT NOT NULL DEFAULT '',
            turn BIGINT NOT NULL DEFAULT 0,   -- the job's turn among its client's unfinished jobs (fair claims)
            spec TEXT,                        -- the validated job (JobSpec.stored)
            reserve BIGINT NOT NULL DEFAULT 0 -- what an unfinished job holds for its result
        );
        CREATE INDEX requests_by_mode ON requests(mode, id);
        CREATE INDEX requests_by_status ON requests(status, id);
        CREATE INDEX requests_client_turns ON requests(client, turn) WHERE \(Schema.unfinished);
        CREATE INDEX requests_turns ON requests(turn, next_attempt_at) WHERE \(Schema.unfinished);
        CREATE TABLE attempts(
            request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            at BIGINT NOT NULL,
            duration_ms DOUBLE PRECISION NOT NULL,
            http_status INTEGER,
            error TEXT,
            next_attempt_at BIGINT,
            PRIMARY KEY(request_id, n)
        );
        CREATE TABLE daemon(
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            active_workers INTEGER NOT NULL,
            heartbeat_at BIGINT NOT NULL,
            circuits TEXT NOT NULL DEFAULT '[]',
            stats TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE client_storage(client TEXT PRIMARY KEY, bytes BIGINT NOT NULL);
        -- backlog: pending + processing; stored: what every row counts against its client, reserves included;
        -- reserved: the reserves alone. Every enqueue locks this row first (FOR UPDATE), so the bounds it
        -- checks hold across every node.
        CREATE TABLE counters(
            id INTEGER PRIMARY KEY CHECK (id = 1),
            backlog BIGINT NOT NULL, stored BIGINT NOT NULL, reserved BIGINT NOT NULL);
        INSERT INTO counters VALUES (1, 0, 0, 0);
        CREATE FUNCTION requests_counters() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            delta_backlog BIGINT := 0;
            delta_stored BIGINT := 0;
            delta_reserved BIGINT := 0;
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                delta_backlog := delta_backlog - (OLD.status IN ('pending', 'processing'))::int;
                delta_stored := delta_stored - \(size("OLD"));
                delta_reserved := delta_reserved - OLD.reserve;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                delta_backlog := delta_backlog + (NEW.status IN ('pending', 'processing'))::int;
                delta_stored := delta_stored + \(size("NEW"));
                delta_reserved := delta_reserved + NEW.reserve;
            END IF;
            -- counters before client_storage, in every transaction: enqueues lock counters first.
            IF TG_OP = 'UPDATE' AND OLD.client <> NEW.client THEN
                RAISE EXCEPTION 'a request''s client never changes';
            END IF;
            IF delta_backlog <> 0 OR delta_stored <> 0 OR delta_reserved <> 0 THEN
                UPDATE counters SET backlog = backlog + delta_backlog, stored = stored + delta_stored,
                    reserved = reserved + delta_reserved WHERE id = 1;
            END IF;
            IF delta_stored <> 0 THEN
                IF TG_OP = 'DELETE' THEN
                    UPDATE client_storage SET bytes = bytes + delta_stored WHERE client = OLD.client;
                    DELETE FROM client_storage WHERE client = OLD.client AND bytes <= 0;
                ELSE
                    INSERT INTO client_storage VALUES (NEW.client, delta_stored)
                        ON CONFLICT(client) DO UPDATE SET bytes = client_storage.bytes + excluded.bytes;
                END IF;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER requests_counters AFTER INSERT OR DELETE OR UPDATE OF status, input, spec, result, reserve
            ON requests FOR EACH ROW EXECUTE FUNCTION requests_counters();
        """,
        // 2: failed callback attempts per minute for /ui's graph of the last hour (as SQLite's schema 11).
        """
        CREATE INDEX attempts_at ON attempts(at);
        """,
        // 3: any number of deliveryd nodes: lease owners, one row per node, chores (as SQLite's schema 12).
        Schema.nodes(integer: "BIGINT", strict: ""),
        // 4: the counters without a hot row. Inserts (the group-commit writer's, under the counters lock, a
        // whole batch in one multi-row INSERT: PostgresInserts) update `counters` and `client_storage` in place,
        // once per statement. Every other change (deliveryd's results, a redeliver, retention's deletes) appends
        // its delta to `counter_deltas`, which the writer folds in under that lock (PostgresStore.fold). In
        // place, deliveryd's result waited on the writer's batch (the lock held to its WAL flush) and the writer
        // on deliveryd: /async at 304-387 req/s, 96 of 110 samples of the two waiting on each other. Per row,
        // the insert trigger made a version of the counters row per row (a HOT chain walked by every next one).
        """
        CREATE TABLE counter_deltas(
            client TEXT NOT NULL, backlog BIGINT NOT NULL, stored BIGINT NOT NULL, reserved BIGINT NOT NULL);
        CREATE OR REPLACE FUNCTION requests_counters() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            delta_backlog BIGINT := 0;
            delta_stored BIGINT := 0;
            delta_reserved BIGINT := 0;
        BEGIN
            delta_backlog := - (OLD.status IN ('pending', 'processing'))::int;
            delta_stored := - \(size("OLD"));
            delta_reserved := - OLD.reserve;
            IF TG_OP = 'UPDATE' THEN
                IF OLD.client <> NEW.client THEN
                    RAISE EXCEPTION 'a request''s client never changes';
                END IF;
                delta_backlog := delta_backlog + (NEW.status IN ('pending', 'processing'))::int;
                delta_stored := delta_stored + \(size("NEW"));
                delta_reserved := delta_reserved + NEW.reserve;
            END IF;
            IF delta_backlog <> 0 OR delta_stored <> 0 OR delta_reserved <> 0 THEN
                INSERT INTO counter_deltas VALUES (OLD.client, delta_backlog, delta_stored, delta_reserved);
            END IF;
            RETURN NULL;
        END $$;
        CREATE FUNCTION requests_counters_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- counters before client_storage, in every transaction: enqueues lock counters first.
            UPDATE counters SET backlog = backlog + d.new_backlog, stored = stored + d.new_stored, reserved = reserved + d.new_reserved
            FROM (SELECT count(*) FILTER (WHERE n.status IN ('pending', 'processing')) AS new_backlog,
                    COALESCE(sum(\(size("n"))), 0) AS new_stored, COALESCE(sum(n.reserve), 0) AS new_reserved, count(*) AS n_rows
                FROM new_rows n) d
            WHERE id = 1 AND d.n_rows > 0;
            INSERT INTO client_storage SELECT n.client, sum(\(size("n"))) FROM new_rows n GROUP BY n.client ORDER BY n.client
                ON CONFLICT(client) DO UPDATE SET bytes = client_storage.bytes + excluded.bytes;
            RETURN NULL;
        END $$;
        DROP TRIGGER requests_counters ON requests;
        CREATE TRIGGER requests_counters AFTER DELETE OR UPDATE OF status, input, spec, result, reserve
            ON requests FOR EACH ROW EXECUTE FUNCTION requests_counters();
        CREATE TRIGGER requests_counters_inserted AFTER INSERT ON requests REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION requests_counters_inserted();
        """,
    ]

    /// What a row counts against its client, as Schema.size: input, job spec and result in bytes, and the reserve.
    static func size(_ row: String) -> String {
        "(octet_length(\(row).input) + COALESCE(octet_length(\(row).spec), 0) + COALESCE(octet_length(\(row).result), 0) + \(row).reserve)"
    }

    /// Brings the database to the newest schema, in one transaction under an advisory lock: nodes starting
    /// together wait for the first, then find nothing to do.
    static func migrate(_ db: PostgresConnection) throws {
        try db.transaction {
            // A node that starts while another migrates waits for it however long that takes (an index built
            // on a large table), not the session's lock_timeout.
            try db.execute("SET LOCAL lock_timeout = 0")
            try db.query("SELECT pg_advisory_xact_lock($1)", [.int(migrationLock)])
            try db.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
            let version = Int(try db.query("SELECT max(version) FROM schema_version").first?.int(0) ?? 0)
            for (i, sql) in migrations.enumerated() where i >= version {
                try db.execute(sql)
                try db.query("INSERT INTO schema_version VALUES ($1)", [.int(Int64(i + 1))])
            }
        }
    }
}
