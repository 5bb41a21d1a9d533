import CSystem
import Foundation

/// One thread owns the write connection. Request threads hand it their write and block; it takes
/// everything queued, runs it in one transaction, commits once, then wakes every waiter. Each caller still
/// returns only after its own row is committed, but the cost of a commit (an fsync with durability=full) is
/// shared by everyone who arrived while the previous commit was running.
final class GroupCommitWriter<Connection: BatchConnection>: @unchecked Sendable {
    /// A queued write. `write` stores its own value; `error` is set when it or the commit failed.
    private final class Ticket: @unchecked Sendable {
        let write: (Connection) throws -> Void
        let done = DispatchSemaphore(value: 0)
        var error: (any Error)?
        init(write: @escaping (Connection) throws -> Void) { self.write = write }
    }

    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    private let db: Connection
    private let condition = NSCondition()
    private var queue: [Ticket] = []
    private var stopping = false
    private let maxBatch: Int
    private var thread: Thread?

    init(db: Connection, maxBatch: Int = 512) {
        self.db = db
        self.maxBatch = maxBatch
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
        condition.lock()
        guard !stopping else {
            condition.unlock()
            throw GroupCommitError.stopped
        }
        queue.append(ticket)
        condition.signal()
        condition.unlock()
        ticket.done.wait()
        // The writer filled `box` and `error` before signalling `done`, which orders the accesses.
        if let error = ticket.error { throw error }
        guard let value = box.value else { throw GroupCommitError.noValue }
        return value
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
                for ticket in batch {
                    // A savepoint per write: one failing write (say, a constraint) fails alone. One name for
                    // all (they never nest), so the statements are prepared once and cached.
                    try db.savepoint()
                    do {
                        try ticket.write(db)
                        try db.releaseSavepoint()
                    } catch {
                        ticket.error = error
                        do {
                            try db.rollbackToSavepoint()
                        } catch {
                            // The database rolled the whole transaction back itself (SQLite may on SQLITE_FULL
                            // or an I/O error; a PostgreSQL connection may be lost): the batch is lost, and the
                            // write's own error says why.
                            throw ticket.error ?? error
                        }
                    }
                }
            }
        } catch {
            // The commit itself failed: nothing in the batch is durable, so nobody may report success.
            for ticket in batch { ticket.error = error }
        }
        for ticket in batch { ticket.done.signal() }
    }
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
    func transaction<T>(_ body: () throws -> T) throws -> T
    func savepoint() throws
    func releaseSavepoint() throws
    /// Undoes the current write and releases its savepoint.
    func rollbackToSavepoint() throws
}

extension Database: BatchConnection {
    // Cached statements like any query, so they are prepared once.
    func savepoint() throws { try query("SAVEPOINT w") }
    func releaseSavepoint() throws { try query("RELEASE w") }
    func rollbackToSavepoint() throws {
        try query("ROLLBACK TO w")
        try query("RELEASE w")
    }
}
