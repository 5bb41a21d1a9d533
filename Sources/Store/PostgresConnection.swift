import CPostgres

#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL failure: the server's SQLSTATE (empty when the connection itself failed) and message.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public var sqlState: String
    public var message: String
    public var description: String { sqlState.isEmpty ? "PostgreSQL: \(message)" : "PostgreSQL \(sqlState): \(message)" }
}

/// One libpq connection, used by one thread at a time (the pool hands it out), hence `@unchecked Sendable`.
/// It reconnects by itself: a statement on a connection found broken first resets it, so a database that
/// restarted or failed over is used again without restarting the daemon; a statement that fails on the
/// way throws, and the caller's request fails alone (an /async answers 503, never 202).
final class PostgresConnection: @unchecked Sendable {
    private let url: String
    private let sessionSettings: [String]
    private let parameters: [(String, String)]
    private var handle: OpaquePointer?
    /// Prepared statements by SQL text; forgotten when the connection is reset (the server forgot them too).
    private var statements: [String: String] = [:]

    /// `url` is a libpq connection URI or keyword string. `sessionSettings` are run after every connect
    /// (e.g. `SET synchronous_commit = on`). `parameters` are libpq keywords given before the URL's own (which
    /// win), after the defaults (which they replace).
    init(url: String, sessionSettings: [String] = [], parameters: [(String, String)] = []) throws {
        self.url = url
        self.sessionSettings = sessionSettings
        self.parameters = parameters
        try connect()
    }

    deinit { PQfinish(handle) }

    private func connect() throws {
        PQfinish(handle)
        handle = nil
        statements = [:]
        // Given first, so the URL's own values win: a bounded connect, a name in pg_stat_activity, and TCP
        // keepalives (ignored on a unix socket): a connection to a database host that vanished (power, network)
        // is found dead within ~25 s, not after the kernel's two hours. The server side of a node that vanished
        // is ended by idle_in_transaction_session_timeout (PostgresStore's session settings).
        let keywords = ["connect_timeout", "application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"]
            + parameters.map(\.0) + ["dbname"]
        let values = ["5", "workfcgi", "1", "10", "5", "3"] + parameters.map(\.1) + [url]
        handle = withCStrings(keywords) { k in withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let message = handle.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            PQfinish(handle)
            self.handle = nil
            throw PostgresError(sqlState: "", message: Self.redacted(message.trimmingTrailingNewlines, url: url))
        }
        // Notices (e.g. "relation already exists, skipping") are not errors: not printed on stderr.
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
        for sql in sessionSettings { try execute(sql) }
    }

    /// libpq's connect errors quote the connection string's bad token (`invalid percent-encoded token:
    /// "p%zzSECRET"`, `missing "=" after "SECRET"`), which may be the password, and they reach the logs. A
    /// string libpq cannot parse is therefore not quoted at all, and a parsed password is masked wherever
    /// it appears.
    static func redacted(_ message: String, url: String) -> String {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            if let error { PQfreemem(error) }
            return "the connection string (WORKFCGI_DATABASE_URL) cannot be parsed by libpq; it is not quoted here, as it may hold a password"
        }
        defer { PQconninfoFree(options) }
        var out = message
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val {
                let password = String(cString: value)
                if !password.isEmpty { out = out.replacingOccurrences(of: password, with: "(masked)") }
            }
            option += 1
        }
        return out
    }

    /// Whether the last statement left the connection usable; a broken one reconnects on next use.
    var isBroken: Bool { handle.map { PQstatus($0) != CONNECTION_OK } ?? true }

    /// Inside a transaction a lost connection is never replaced: its statements would run outside the
    /// transaction, and a COMMIT on a fresh connection would report success for writes that were lost.
    private var inTransaction = false

    private func ready() throws -> OpaquePointer {
        if isBroken {
            guard !inTransaction else { throw PostgresError(sqlState: "", message: "the connection was lost during a transaction") }
            try connect()
        }
        guard let handle else { throw PostgresError(sqlState: "", message: "not connected") }
        return handle
    }

    /// Runs statements that take no parameters and return nothing we read (schema, BEGIN, SET).
    func execute(_ sql: String) throws {
        let handle = try ready()
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        try check(result, handle)
    }

    /// Runs `sql` ($1, $2, ... placeholders) with `bindings`; every row, with integer and float columns
    /// typed and the rest as text. Statements are prepared once per connection.
    @discardableResult
    func query(_ sql: String, _ bindings: [SQLValue] = []) throws -> [Row] {
        try run(sql, bindings).rows
    }

    /// `query`, with the command's tag ("INSERT 0 1", "COMMIT", "ROLLBACK").
    private func run(_ sql: String, _ bindings: [SQLValue]) throws -> (rows: [Row], tag: String) {
        let handle = try ready()
        let name: String
        if let known = statements[sql] {
            name = known
        } else {
            name = "s\(statements.count)"
            let types: [Oid] = bindings.map { value in
                switch value {
                case .null: 0
                case .int: 20  // int8
                case .double: 701  // float8
                case .text: 25  // text
                }
            }
            let prepared = PQprepare(handle, name, sql, Int32(types.count), types)
            defer { PQclear(prepared) }
            try check(prepared, handle)
            statements[sql] = name
        }
        let texts: [String?] = bindings.map { value in
            switch value {
            case .null: nil
            case .int(let v): String(v)
            case .double(let v): "\(v)"
            case .text(let v): v
            }
        }
        let result = withOptionalCStrings(texts) { values in
            PQexecPrepared(handle, name, Int32(texts.count), values, nil, nil, 0)
        }
        defer { PQclear(result) }
        try check(result, handle)
        return (Self.rows(result), result.flatMap { PQcmdStatus($0) }.map { String(cString: $0) } ?? "")
    }

    /// A channel to notify when the current transaction commits (deliveryd's listeners, PostgresListener):
    /// set by a write that made a job due, so a batch of them notifies once. PostgreSQL delivers the
    /// notification at commit and drops it on rollback, so a listener is never woken for a job not committed.
    var notifyAtCommit: String?

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try query("BEGIN")
        inTransaction = true
        defer { (inTransaction, notifyAtCommit) = (false, nil) }
        do {
            let value = try body()
            if let channel = notifyAtCommit { try query("SELECT pg_notify($1, '')", [.text(channel)]) }
            // COMMIT of a transaction that failed half-way answers ROLLBACK, without an error.
            guard try run("COMMIT", []).tag == "COMMIT" else {
                throw PostgresError(sqlState: "40000", message: "the transaction was rolled back")
            }
            return value
        } catch {
            if !isBroken { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Throws the server's error (or libpq's, when the connection failed) for a result that is not a success.
    private func check(_ result: OpaquePointer?, _ handle: OpaquePointer) throws {
        let status = result.map(PQresultStatus) ?? PGRES_FATAL_ERROR
        guard status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK else { return }
        let state = result.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) } ?? ""
        let message = result.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "M"))) }.map { String(cString: $0) }
            ?? String(cString: PQerrorMessage(handle)).trimmingTrailingNewlines
        throw PostgresError(sqlState: state, message: message)
    }

    private static func rows(_ result: OpaquePointer?) -> [Row] {
        guard let result else { return [] }
        let (n, columns) = (PQntuples(result), PQnfields(result))
        let types = (0..<columns).map { PQftype(result, $0) }
        var rows: [Row] = []
        rows.reserveCapacity(Int(n))
        for r in 0..<n {
            var values: [SQLValue] = []
            values.reserveCapacity(Int(columns))
            for c in 0..<columns {
                guard PQgetisnull(result, r, c) == 0, let raw = PQgetvalue(result, r, c) else {
                    values.append(.null)
                    continue
                }
                let text = String(cString: raw)
                switch types[Int(c)] {
                case 20, 21, 23: values.append(Int64(text).map(SQLValue.int) ?? .null)  // int8, int2, int4
                case 700, 701, 1700: values.append(Double(text).map(SQLValue.double) ?? .null)  // float4, float8, numeric
                default: values.append(.text(text))
                }
            }
            rows.append(Row(values: values))
        }
        return rows
    }
}

// What a listening connection needs (PostgresListener): its socket to poll, and the notifications read off it.
extension PostgresConnection {
    /// The connection's socket, to poll for input (-1 when not connected).
    var socket: Int32 { handle.map(PQsocket) ?? -1 }

    /// The server's process id for this connection (pg_stat_activity.pid; 0 when not connected).
    var backendPID: Int32 { handle.map(PQbackendPID) ?? 0 }

    /// Reads what the server sent, without blocking, and returns how many notifications arrived (freed: the
    /// listener needs only that there were some). Throws when the connection is lost.
    func takeNotifications() throws -> Int {
        guard let handle, PQconsumeInput(handle) == 1, PQstatus(handle) == CONNECTION_OK else {
            let message = handle.map { String(cString: PQerrorMessage($0)).trimmingTrailingNewlines } ?? "not connected"
            throw PostgresError(sqlState: "", message: message.isEmpty ? "the connection was lost" : message)
        }
        var count = 0
        while let notification = PQnotifies(handle) {
            PQfreemem(notification)
            count += 1
        }
        return count
    }
}

extension PostgresConnection: BatchConnection {
    /// A lost connection (no SQLSTATE, or class 08), a lock or statement timeout (55P03, 57014), the server
    /// shutting down (class 57) or out of resources (53): nothing about one write, so each alone would fail the
    /// same way, a timeout each.
    static func failsEveryWrite(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        let state = error.sqlState
        return state.isEmpty || state.hasPrefix("08") || state.hasPrefix("57") || state.hasPrefix("53") || state == "55P03"
    }

    func savepoint() throws { try query("SAVEPOINT w") }
    func releaseSavepoint() throws { try query("RELEASE SAVEPOINT w") }
    func rollbackToSavepoint() throws {
        try query("ROLLBACK TO SAVEPOINT w")
        try query("RELEASE SAVEPOINT w")
    }
}

extension String {
    fileprivate var trimmingTrailingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" { s = s.dropLast() }
        return String(s)
    }
}

/// `strings` as a NULL-terminated array of C strings, valid during `body`.
private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
    withOptionalCStrings(strings + [nil]) { body($0) }
}

/// `strings` as an array of C strings (nil stays NULL), valid during `body`.
private func withOptionalCStrings<T>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> T) -> T {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } }
    defer { for p in copies { free(p) } }
    return copies.map { UnsafePointer($0) }.withUnsafeBufferPointer { body($0.baseAddress!) }
}
