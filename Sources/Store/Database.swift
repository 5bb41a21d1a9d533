import Config
import CSQLite
import CSystem
import LocalFiles

#if canImport(Glibc)
import Glibc
#endif

/// A value bound to or read from SQLite.
enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
}

/// A SQLite failure with the library's own message.
struct SQLiteError: Error, Sendable, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite error \(code): \(message)" }
    /// SQLITE_FULL: the database reached its size bound (max_page_count) or the disk is full.
    var isFull: Bool { code & 0xff == SQLITE_FULL }
    /// SQLITE_BUSY or SQLITE_LOCKED: another writer held the lock past the busy timeout.
    var isBusy: Bool { code & 0xff == SQLITE_BUSY || code & 0xff == SQLITE_LOCKED }
}

/// One SQLite connection. Not thread-safe by design: each thread that touches the database owns its own
/// (SQLite's rule for WAL concurrency), so this class is `@unchecked Sendable` only to be handed to that thread.
final class Database: @unchecked Sendable {
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    /// `<database>-writer`, flock'ed around every write transaction.
    private let writerLock: Int32

    /// `maxBytes` bounds the database file (SQLite's max_page_count); nil leaves SQLite's own limit.
    /// `cacheKiB` is this connection's page cache (SQLite's default is 2 MiB per connection).
    init(path: String, durability: Settings.Durability = .full, maxBytes: Int64? = nil, cacheKiB: Int = 2048) throws {
        // Never through a symlink, never another user's file: the folder may once have been open to others.
        // The database holds every job's input, result and callback URL: owner only, whatever the umask was
        // when a file was created (SQLite gives new -wal and -shm files the main file's mode).
        try LocalFile.restrict(path, mode: 0o600)
        writerLock = try LocalFile.openOwn(path + "-writer")
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            handle = nil
            throw SQLiteError(code: rc, message: "\(path): \(message)")
        }
        // (A throw from here on runs deinit, which closes the handle and the lock file.)
        for suffix in ["", "-wal", "-shm"] { try LocalFile.restrict(path + suffix, mode: 0o600) }
        sqlite3_extended_result_codes(handle, 1)
        // Writers (two processes, several threads) meet at the write lock: wait for it rather than fail, but
        // in steps of 0.1 ms, then 1 ms. SQLite's own busy_timeout sleeps 1, 2, 5, ... up to 100 ms per retry,
        // so a lock held for 1 ms could cost a writer 100 ms: measured, deliveryd drained 13 jobs/s that way.
        sqlite3_busy_handler(handle, { _, count in
            usleep(count < 100 ? 100 : 1000)
            return count < 5_100 ? 1 : 0  // about 5 s in all
        }, nil)
        // Switching a new file to WAL takes an exclusive lock and does not wait on the busy handler, so
        // workfcgi and deliveryd starting together on a fresh file retry here for a while.
        var tries = 0
        while true {
            do {
                try execute("PRAGMA journal_mode=WAL")
                break
            } catch let error as SQLiteError where error.isBusy && tries < 100 {
                tries += 1
                usleep(50_000)
            }
        }
        // FULL fsyncs every commit (survives power loss); NORMAL in WAL mode survives a process crash.
        try execute("PRAGMA synchronous=\(durability == .full ? "FULL" : "NORMAL")")
        try execute("PRAGMA cache_size=-\(cacheKiB)")
        // Fixed once the file is in WAL mode (VACUUM cannot change it there): read once, not per size check.
        pageSize = try query("PRAGMA page_size").first?.int(0) ?? 4096
        if let maxBytes { try limit(toBytes: maxBytes) }
        try execute("PRAGMA foreign_keys=ON")
    }

    /// The max_page_count last set on this connection, in bytes (nil: SQLite's own).
    private(set) var limitBytes: Int64?
    /// The file's page size in bytes.
    private(set) var pageSize: Int64 = 4096

    /// Sets this connection's max_page_count. It bounds only this connection, and SQLite raises it to the
    /// file's size once another connection has grown the file: a hard stop, not the bound between processes.
    func limit(toBytes bytes: Int64) throws {
        try execute("PRAGMA max_page_count=\(max(1, bytes / max(512, pageSize)))")
        limitBytes = bytes
    }

    deinit {
        for (_, s) in statements { sqlite3_finalize(s) }
        sqlite3_close_v2(handle)
        close(writerLock)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Runs one or more statements that return no rows we need.
    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text)
        }
    }

    /// Runs `sql` with `bindings` and returns every row. Statements are prepared once and cached.
    @discardableResult
    func query(_ sql: String, _ bindings: [SQLValue] = []) throws -> [Row] {
        let stmt = try prepared(sql)
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        for (i, value) in bindings.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(stmt, index)
            case .int(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .double(let v): rc = sqlite3_bind_double(stmt, index, v)
            case .text(let v): rc = workfcgi_sqlite3_bind_text(stmt, index, v, -1)
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        var rows: [Row] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            var values: [SQLValue] = []
            let n = sqlite3_column_count(stmt)
            values.reserveCapacity(Int(n))
            for c in 0..<n {
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: values.append(.int(sqlite3_column_int64(stmt, c)))
                case SQLITE_FLOAT: values.append(.double(sqlite3_column_double(stmt, c)))
                case SQLITE_NULL: values.append(.null)
                default:
                    if let text = sqlite3_column_text(stmt, c) {
                        values.append(.text(String(cString: text)))
                    } else {
                        values.append(.null)
                    }
                }
            }
            rows.append(Row(values: values))
        }
        return rows
    }

    /// Runs `body` in a write transaction (BEGIN IMMEDIATE: take the write lock up front, so a busy
    /// database is waited for at the start instead of failing half-way). BEGIN and COMMIT are cached
    /// statements like any query: sqlite3_exec would parse their text on every call.
    ///
    /// Writers of every process first queue on a blocking flock of `<database>-writer`. SQLite's own write
    /// lock cannot be waited on, only polled (the busy handler): measured under an /async storm with deliveryd
    /// delivering, the group-commit thread and deliveryd met its lock ~5,500 times a second, each poll a sleep,
    /// and deliveryd claimed 700 jobs/s while workfcgi accepted 2,500. The kernel wakes a flock waiter the
    /// moment the holder lets go. SQLite's lock still decides; the flock only orders those who take it. The
    /// wait has no timeout: a holder stuck in I/O stops the watchdog's round trips, and systemd restarts it.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        _ = workfcgi_flock(writerLock, 1)
        defer { _ = workfcgi_flock(writerLock, 0) }
        try query("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try query("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(handle)) }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let s = statements[sql] { return s }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc) }
        statements[sql] = stmt
        return stmt
    }
}

/// One result row; columns by position, as selected.
struct Row: Sendable {
    var values: [SQLValue]

    func int(_ i: Int) -> Int64? { if case .int(let v) = values[i] { return v }; return nil }
    func double(_ i: Int) -> Double? {
        switch values[i] {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: return nil
        }
    }
    func text(_ i: Int) -> String? { if case .text(let v) = values[i] { return v }; return nil }
}
