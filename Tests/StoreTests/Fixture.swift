import Config
import Foundation
import Harness
import Synchronization
import Testing

@testable import Store

/// The stores the semantic tests run against: every JobStoreTests test runs once on each.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }
}

/// One fresh database of a backend (a temporary folder for SQLite; a schema of its own in the test process's
/// private PostgreSQL cluster, see Harness/PostgresCluster), and the stores opened on it, each as one process
/// (a workfcgi or deliveryd node) would open it. Closed and removed at the end.
final class Fixture: Sendable {
    let backend: Backend
    private let directory: String
    /// The SQLite database's file.
    var sqlitePath: String { directory + "/t.db" }
    /// The PostgreSQL database's URL (its own schema), for what opens a connection besides the stores.
    let postgresURL: String?
    private let stores = Mutex<[any JobStore]>([])

    init(_ backend: Backend) throws {
        self.backend = backend
        directory = NSTemporaryDirectory() + "storetests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        postgresURL = backend == .postgres ? try PostgresCluster.shared().freshDatabase() : nil
    }

    deinit {
        for store in stores.withLock({ $0 }) { Self.close(store) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func close(_ store: any JobStore) {
        (store as? any DaemonStore)?.close()
    }

    /// A store on this fixture's database: `bound` as the daemons pass it; `deliveryd` opens it as deliveryd
    /// does (commits without waiting for the disk).
    func open(bound: SizeBound? = nil, deliveryd: Bool = false) throws -> any JobStore {
        let store: any JobStore =
            switch backend {
            case .sqlite: try SQLiteStore(path: sqlitePath, durability: deliveryd ? .normal : .full, bound: bound)
            case .postgres: try PostgresStore(url: postgresURL!, durability: deliveryd ? .normal : .full, bound: bound)
            }
        stores.withLock { $0.append(store) }
        return store
    }

    /// Runs `body` with a store on a fresh database of `backend`, kept until it returns.
    static func with(_ backend: Backend, _ body: (any JobStore, Fixture) throws -> Void) throws {
        let fixture = try Fixture(backend)
        try withExtendedLifetime(fixture) { try body(fixture.open(), fixture) }
    }
}

extension JobStore {
    /// The tests' enqueue and recordSync, without the bounds a test does not set (as the concrete stores default).
    func enqueue(_ job: NewJob, backlogLimit: Int, clientLimit: Int = .max) throws -> EnqueueOutcome {
        try enqueue(job, backlogLimit: backlogLimit, clientLimit: clientLimit, clientStorageLimit: .max)
    }

    func enqueue(_ job: NewJob, backlogLimit: Int, clientStorageLimit: Int64) throws -> EnqueueOutcome {
        try enqueue(job, backlogLimit: backlogLimit, clientLimit: .max, clientStorageLimit: clientStorageLimit)
    }

    func recordSync(_ record: SyncRecord) throws {
        try recordSync(record, clientStorageLimit: .max)
    }
}
