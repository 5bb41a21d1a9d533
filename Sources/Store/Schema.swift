/// The schema, as numbered migrations applied in order and tracked in `PRAGMA user_version`.
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
        // 3: who submitted each job, for the per-client bound and fair claiming.
        """
        ALTER TABLE requests ADD COLUMN client TEXT NOT NULL DEFAULT '';
        CREATE INDEX requests_open_by_client ON requests(client) WHERE status IN ('pending', 'processing', 'delivering');
        """,
    ]

    /// Brings `db` to the newest schema. Safe to run from several processes at once: the version is read
    /// and advanced inside one write transaction.
    static func migrate(_ db: Database) throws {
        try db.transaction {
            let version = Int(try db.query("PRAGMA user_version").first?.int(0) ?? 0)
            for (i, sql) in migrations.enumerated() where i >= version {
                try db.execute(sql)
                try db.execute("PRAGMA user_version = \(i + 1)")
            }
        }
    }
}
