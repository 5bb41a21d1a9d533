import Foundation
import Harness
import Synchronization
import Testing

/// The README's online backup, taken with the stack under an /async storm: the copy is consistent and holds
/// every job acknowledged before the backup began.
@Suite(.serialized) struct BackupTests {
    @Test(.disabled(if: Stack.onPostgres, "VACUUM INTO is SQLite's backup; PostgreSQL's is pg_dump or a base backup")) func vacuumIntoDuringAStormKeepsEveryAcknowledgedJob() throws {
        let stack = try Stack(settings: ["WORKFCGI_BACKLOG_LIMIT": "1000000", "WORKFCGI_CLIENT_BACKLOG_LIMIT": "1000000"],
            rate: "100000r/s", burst: 100_000)
        try stack.start()
        defer { stack.stopAll() }
        let database = stack.runDirectory + "/workfcgi.db"
        let backup = stack.directory.appendingPathComponent("backup.db").path

        // Four clients submit jobs back to back; each 202 is noted with the time it arrived.
        let acknowledged = Mutex<[(id: String, at: Date)]>([])
        let running = Atomic<Bool>(true)
        let done = DispatchGroup()
        for _ in 0..<4 {
            done.enter()
            Thread { [stack] in
                let client = HTTPClient(timeoutSeconds: 10)
                while running.load(ordering: .relaxed) {
                    if let r = try? client.postJSON(stack.baseURL + "/async", #"{"text": "b", "callback_url": "http://127.0.0.1:9/"}"#),
                        r.status == 202, let id = r.json?["request_id"] as? String
                    {
                        let at = Date()
                        acknowledged.withLock { $0.append((id, at)) }
                    }
                }
                done.leave()
            }.start()
        }
        try stack.waitFor("a storm under way") { acknowledged.withLock { $0.count } >= 200 }
        let began = Date()
        // The command from the README (Operations, Backups), run while the writes go on.
        let result = try Stack.run("/usr/bin/env", ["sh", "-c", "umask 077 && sqlite3 '\(database)' \"VACUUM INTO '\(backup)'\""])
        running.store(false, ordering: .relaxed)
        done.wait()
        #expect(result.status == 0, "\(result.output)")

        let before = acknowledged.withLock { $0.filter { $0.at < began }.map(\.id) }
        let after = acknowledged.withLock { $0.count } - before.count
        #expect(before.count >= 200 && after > 0, "the backup ran during the storm: \(before.count) before, \(after) after")
        let check = try Stack.run("/usr/bin/env", ["sqlite3", backup, "PRAGMA integrity_check"])
        #expect(check.output.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(check.output)")
        let ids = try Stack.run("/usr/bin/env", ["sqlite3", backup, "SELECT id FROM requests WHERE mode = 'async'"]).output
        let inBackup = Set(ids.split(separator: "\n").map(String.init))
        let missing = before.filter { !inBackup.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) of \(before.count) acknowledged jobs missing from the backup")
        let mode = try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the copy is as private as the database")
    }
}
