import Foundation
import Testing
import WorkEngine

@testable import Store

/// What only the SQLite store has: its files, its old schemas, its settings table; and the pure types.
@Suite final class SQLiteStoreTests {
    let directory: String
    let store: SQLiteStore

    init() throws {
        directory = NSTemporaryDirectory() + "storetests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory + "/t.db")
    }

    deinit {
        store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func job(_ now: UnixMillis, key: String? = nil) -> NewJob {
        NewJob(
            id: RequestID.make(now: now), spec: .hash(input: "x", iterations: 1), input: ["input_data": "x", "callback_url": "http://h.example/"],
            callbackURL: "http://h.example/", idempotencyKey: key, createdAt: now)
    }

    func textJob(_ now: UnixMillis, client: String, count: Int = 20) -> NewJob {
        let text = String(repeating: "ab ", count: 3_000)
        return NewJob(
            id: RequestID.make(now: now), spec: .text(text: text, count: count), input: ["text": .string(text), "count": .number(Double(count))],
            callbackURL: "http://h.example/", idempotencyKey: nil, createdAt: now, client: client)
    }

    @Test func takeSettingReadsOnce() throws {
        #expect(try store.takeSetting("s") == nil)
    }

    @Test func databaseFilesAreOwnerOnlyWhateverTheUmask() throws {
        let dir = NSTemporaryDirectory() + "modes-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = umask(0o022)
        defer { umask(old) }
        let db = try SQLiteStore(path: dir + "/m.db")
        _ = try db.enqueue(job(WallClock.nowMillis()), backlogLimit: 10)
        for file in ["m.db", "m.db-wal", "m.db-shm", "m.db-writer"] {
            let mode = try FileManager.default.attributesOfItem(atPath: dir + "/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file): \(String(mode ?? 0, radix: 8))")
        }
        db.close()
    }

    @Test func requestIDsAreTimeOrderedUUIDv7() {
        let a = RequestID.make(now: 1_000_000)
        let b = RequestID.make(now: 1_000_001)
        #expect(a < b)
        #expect(RequestID.isValid(a))
        #expect(Array(a)[14] == "7")
        #expect(a.hasPrefix("0000000f-4240-7"))  // 1,000,000 ms = 0xf4240 in the first 48 bits
        #expect(a.count == 36 && "89ab".contains(Array(a)[19]))  // RFC 4122 variant
        #expect(!RequestID.isValid("../../etc"))
        #expect(!RequestID.isValid("01A21618-28C3-7FB4-A704-19A00CF1C59D"))
    }

    /// Jobs accepted by a version before schema 6 have no stored spec: the migration derives it from the
    /// input they were accepted with, and one it cannot read is delivered as failed, never lost or crashed on.
    @Test func jobsFromBeforeStoredSpecsStillRun() throws {
        let path = directory + "/old.db"
        let now = WallClock.nowMillis()
        let (good, bad) = (RequestID.make(now: now), RequestID.make(now: now + 1))
        try Self.makeVersion5(path, now: now, jobs: [
            (good, #"{"input_data":"x","iterations":3,"callback_url":"http://h.example/"}"#), (bad, #"{"op":"gone"}"#),
        ])
        let upgraded = try SQLiteStore(path: path)
        defer { upgraded.close() }
        let claimed = try upgraded.claim(limit: 5, leaseMillis: 1000, now: now + 10)
        let unreadable = "the stored job could not be read back"
        #expect(claimed.first { $0.id == good }?.work == .toDo(.hash(input: "x", iterations: 3)))
        #expect(claimed.first { $0.id == bad }?.work == .done(WorkResult(result: nil, error: unreadable, durationMs: 0, completedAt: now + 10)))
        #expect(try upgraded.request(id: bad)?.error == unreadable)
    }

    /// A database as schema 5 left it, with pending async jobs (id, input); closed on return.
    static func makeVersion5(_ path: String, now: Int64, jobs: [(String, String)]) throws {
        let db = try Database(path: path)
        for sql in Schema.migrations.prefix(5) { try db.execute(sql) }
        try db.execute("PRAGMA user_version = 5")
        for (id, input) in jobs {
            _ = try db.query(
                """
                INSERT INTO requests(id, mode, op, status, input, callback_url, created_at, next_attempt_at)
                VALUES (?, 'async', 'hash', 'pending', ?, 'http://h.example/', ?, ?)
                """, [.text(id), .text(input), .int(now), .int(now)])
        }
    }

    /// Far from the bound the front door admits on its estimate; within the slack it reads exactly, so a
    /// fill from many threads' batches still stops at the bound and not past it.
    @Test func theEstimateStopsAtTheBound() throws {
        let path = directory + "/estimate.db"
        let bound: Int64 = 8 << 20
        let front = try SQLiteStore(path: path, bound: .sets(bound))
        defer { front.close() }
        let now = WallClock.nowMillis()
        var accepted = 0
        var full: (any Error)?
        for i in 0..<2_000 {
            do { if case .accepted = try front.enqueue(textJob(now + Int64(i), client: "c\(i % 7)"), backlogLimit: 100_000) { accepted += 1 } } catch {
                full = error
                break
            }
        }
        #expect(full is StoreFull, "\(String(describing: full))")
        let usage = try front.storageUsage()
        #expect(usage.usedBytes + usage.reservedBytes <= bound, "\(usage)")
        // The estimate never admitted into the last slack: what is taken is within it of the bound.
        #expect(usage.usedBytes + usage.reservedBytes > bound - RoomEstimate.slack(bound) - (64 << 10), "\(usage)")
        #expect(accepted > 20)
    }

    @Test func roomEstimate() {
        let bound: Int64 = 100 << 20
        let slack = RoomEstimate.slack(bound)
        #expect(slack == 2 << 20 || slack == bound / 50)
        var e = RoomEstimate(reading: StorageUsage(usedBytes: 50 << 20, reservedBytes: 10 << 20, boundBytes: bound), at: 1_000)
        #expect(e.taken == 60 << 20)
        #expect(e.admits(1 << 20, bound: bound, now: 1_050))
        #expect(!e.admits(1 << 20, bound: bound, now: 1_000 + RoomEstimate.maxAge), "too old: read again")
        #expect(!e.admits(1 << 20, bound: bound, now: 999), "the clock went back")
        #expect(!e.admits(bound - (60 << 20) - slack + 1, bound: bound, now: 1_050), "into the slack")
        #expect(e.admits(bound - (60 << 20) - slack, bound: bound, now: 1_050))
        e.admitted(30 << 20)
        #expect(e.taken == 90 << 20 && !e.admits(bound - (90 << 20) - slack + 1, bound: bound, now: 1_050))
        #expect(RoomEstimate.slack(1 << 20) == 1 << 20, "small bounds: always exact")
    }

    @Test func storageStates() {
        let bound: Int64 = 100 << 20
        func usage(_ used: Int64, _ reserved: Int64 = 0, refusal: StorageUsage.Refusal? = nil) -> StorageUsage {
            StorageUsage(usedBytes: used, reservedBytes: reserved, boundBytes: bound, refusal: refusal)
        }
        #expect(usage(50 << 20).state(nearlyAt: 0.9, now: 0) == .ok)
        #expect(usage(80 << 20, 12 << 20).state(nearlyAt: 0.9, now: 0) == .nearlyFull, "reserved counts")
        #expect(usage(99 << 20, 512 << 10).state(nearlyAt: 0.9, now: 0) == .full)
        let refused = StorageUsage.Refusal(at: 1_000, bytes: 95 << 20)
        #expect(usage(95 << 20, refusal: refused).state(nearlyAt: 0.9, now: 2_000) == .full, "a row was just refused")
        #expect(usage(95 << 20, refusal: refused).state(nearlyAt: 0.9, now: 70_000) == .nearlyFull, "a minute ago")
        #expect(usage(80 << 20, refusal: refused).state(nearlyAt: 0.9, now: 2_000) == .ok, "room was made since")
        #expect(usage(90 << 20, 10 << 20).admits(0) && !usage(90 << 20, 10 << 20).admits(1))
        #expect(StorageUsage(usedBytes: 1 << 40, reservedBytes: 0, boundBytes: nil).admits(1 << 40))
        #expect(SizeBound.headroom(4 << 30) == (4 << 30) / 20 && SizeBound.headroom(1 << 20) == 2 << 20)
    }
}
