import CSystem
import Foundation

/// One thread owns the write connection. Request threads hand it their write and block; it takes
/// everything queued, runs it in one transaction, commits once, then wakes every waiter. Each caller still
/// returns only after its own row is committed, but the cost of a commit (an fsync with durability=full) is
/// shared by everyone who arrived while the previous commit was running.
///
/// A write is either a closure (run alone, under a savepoint of its own) or a `Combined` value: every
/// combined write of a batch goes to `combine` at once, so a store can run them in a few statements for the
/// whole batch rather than a few per write (PostgreSQL's inserts: each statement is a round trip to the
/// server's process, and per write they cost ~2 ms on the loaded 2-core machine, see PostgresStore.Inserts).
final class GroupCommitWriter<Connection: BatchConnection, Combined: Sendable, Outcome: Sendable>: @unchecked Sendable {
    /// Runs every combined write of a batch inside its transaction: one result per write, in order (a
    /// refusal is that write's failure). Throwing fails them all: then each is tried again alone.
    typealias Combine = @Sendable (Connection, [Combined]) throws -> [Result<Outcome, any Error>]

    /// A queued write. `write` stores its own value; `error` is set when it or the commit failed.
    private final class Ticket: @unchecked Sendable {
        let write: ((Connection) throws -> Void)?
        let combined: Combined?
        var outcome: Outcome?
        let done = DispatchSemaphore(value: 0)
        var error: (any Error)?
        init(write: @escaping (Connection) throws -> Void) { (self.write, combined) = (write, nil) }
        init(combined: Combined) { (write, self.combined) = (nil, combined) }
    }

    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    private let db: Connection
    private let condition = NSCondition()
    private var queue: [Ticket] = []
    private var stopping = false
    private let maxBatch: Int
    private let combine: Combine?
    private var thread: Thread?

    init(db: Connection, maxBatch: Int = 512, combine: Combine?) {
        self.db = db
        self.maxBatch = maxBatch
        self.combine = combine
        // The thread keeps the writer alive until `stop()` lets it finish.
        let thread = Thread { [self] in
            workfcgi_name_thread("group-commit")
            self.run()
        }
        self.thread = thread
        thread.start()
    }

    /// Runs `write` in the next batch and returns its value once that batch is committed.
    @discardableResult
    func submit<T: Sendable>(_ write: @escaping @Sendable (Connection) throws -> T) throws -> T {
        let box = Box<T>()
        let ticket = Ticket(write: { db in box.value = try write(db) })
        try wait(for: ticket)
        guard let value = box.value else { throw GroupCommitError.noValue }
        return value
    }

    /// Runs `write` with the other combined writes of the next batch; its outcome once that batch is committed.
    func submit(combined write: Combined) throws -> Outcome {
        let ticket = Ticket(combined: write)
        try wait(for: ticket)
        guard let outcome = ticket.outcome else { throw GroupCommitError.noValue }
        return outcome
    }

    private func wait(for ticket: Ticket) throws {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            throw GroupCommitError.stopped
        }
        queue.append(ticket)
        condition.signal()
        condition.unlock()
        ticket.done.wait()
        // The writer filled the ticket before signalling `done`, which orders the accesses.
        if let error = ticket.error { throw error }
    }

    /// Finishes what is queued, then stops the thread.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = Array(queue.prefix(maxBatch))
            queue.removeFirst(batch.count)
            condition.unlock()
            commit(batch)
        }
    }

    private func commit(_ batch: [Ticket]) {
        do {
            try db.transaction {
                var combined: [Ticket] = []
                for ticket in batch {
                    guard let write = ticket.write else {
                        combined.append(ticket)
                        continue
                    }
                    try alone(ticket) { try write(db) }
                }
                guard !combined.isEmpty, let combine else {
                    for ticket in combined { ticket.error = GroupCommitError.noValue }
                    return
                }
                do {
                    try alone(nil) { try assign(combine(db, combined.compactMap(\.combined)), to: combined) }
                } catch let lost as BatchLost {
                    throw lost
                } catch {
                    // One of them failed the statements (a constraint, say): each alone, so it fails alone. Not
                    // when the failure is the database's (a lock timeout behind a node that froze holding the
                    // counters row): each alone would wait the same timeout again, the k-th answered after k+1 of
                    // them, so all fail now with that error (503, Retry-After).
                    guard combined.count > 1, !Connection.failsEveryWrite(error) else {
                        for ticket in combined { ticket.error = error }
                        return
                    }
                    for ticket in combined {
                        (ticket.outcome, ticket.error) = (nil, nil)
                        try alone(ticket) { try assign(combine(db, [ticket.combined!]), to: [ticket]) }
                    }
                }
            }
        } catch {
            // The commit itself failed: nothing in the batch is durable, so nobody may report success.
            let error = (error as? BatchLost)?.error ?? error
            for ticket in batch { ticket.error = error }
        }
        for ticket in batch { ticket.done.signal() }
    }

    private func assign(_ results: [Result<Outcome, any Error>], to tickets: [Ticket]) throws {
        guard results.count == tickets.count else { throw GroupCommitError.noValue }
        for (ticket, result) in zip(tickets, results) {
            switch result {
            case .success(let outcome): ticket.outcome = outcome
            case .failure(let error): ticket.error = error
            }
        }
    }

    /// Runs `body` under a savepoint: a failing write (say, a constraint) fails alone, its error on `ticket`
    /// (rethrown when there is none). One name for all (they never nest), so the statements are prepared once
    /// and cached.
    private func alone(_ ticket: Ticket?, _ body: () throws -> Void) throws {
        try db.savepoint()
        do {
            try body()
            try db.releaseSavepoint()
        } catch let failure {
            do {
                try db.rollbackToSavepoint()
            } catch {
                // The database rolled the whole transaction back itself (SQLite may on SQLITE_FULL or an I/O
                // error; a PostgreSQL connection may be lost): the batch is lost, and the write's own error says why.
                throw BatchLost(error: failure)
            }
            guard let ticket else { throw failure }
            ticket.error = failure
        }
    }
}

/// The transaction was lost with the write that failed (`error`): every write of the batch fails.
private struct BatchLost: Error {
    var error: any Error
}

extension GroupCommitWriter where Combined == Never, Outcome == Never {
    /// A writer of closures only.
    convenience init(db: Connection, maxBatch: Int = 512) { self.init(db: db, maxBatch: maxBatch, combine: nil) }
}

/// Why a write never reached the database.
enum GroupCommitError: Error, Sendable {
    /// The store was closed.
    case stopped
    /// The write returned without a value (it cannot: a write that fails throws).
    case noValue
}

/// A connection the group-commit writer batches on: one transaction, a savepoint per write (one name for all,
/// they never nest), so one failing write fails alone.
protocol BatchConnection: AnyObject, Sendable {
    /// Whether `error` is about the connection or the database, not one write: then a batch's writes are not
    /// tried again one by one.
    static func failsEveryWrite(_ error: any Error) -> Bool
    func transaction<T>(_ body: () throws -> T) throws -> T
    func savepoint() throws
    func releaseSavepoint() throws
    /// Undoes the current write and releases its savepoint.
    func rollbackToSavepoint() throws
}

extension Database: BatchConnection {
    // SQLite's failures that are not one write's (SQLITE_FULL, I/O) roll the transaction back, which the
    // savepoint's rollback reports.
    static func failsEveryWrite(_ error: any Error) -> Bool { false }
    // Cached statements like any query, so they are prepared once.
    func savepoint() throws { try query("SAVEPOINT w") }
    func releaseSavepoint() throws { try query("RELEASE w") }
    func rollbackToSavepoint() throws {
        try query("ROLLBACK TO w")
        try query("RELEASE w")
    }
}
