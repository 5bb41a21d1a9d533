import Foundation
import Harness
import Testing

/// Output and disk amplification: a request cannot make a response or a stored record much larger than
/// itself, and the database has a bound; reaching it refuses new jobs clearly and is never silent.
@Suite(.serialized, .timeLimit(.minutes(2))) struct StorageBoundTests {
    @Test func largeTextIsBoundedInBytes() throws {
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        let client = HTTPClient()
        // 5,000 characters of 100 bytes each: once accepted (characters were counted), 20 repeats gave ~10 MB.
        let heavy = String(repeating: "e" + String(repeating: "\u{301}", count: 49), count: 5_000)
        let refused = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(heavy)", "count": 20}"#)
        #expect(refused.status == 422)
        #expect((refused.json?["error"] as? [String: Any])?["field"] as? String == "text")
        let accepted = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(String(repeating: "ab ", count: 3_000))", "count": 20}"#)
        #expect(accepted.status == 200)
        #expect(accepted.body.count < 1 << 20)
    }

    @Test func aFullDatabaseRefusesJobsAndSaysSo() throws {
        let stack = try Stack(settings: ["WORKFCGI_MAX_DB_SIZE": "1m", "WORKFCGI_CLIENT_STORAGE_LIMIT": "1m"])
        try stack.start([.workfcgi, .nginx])
        let client = HTTPClient()
        let text = String(repeating: "x", count: 9_000)
        var refusal: HTTPClient.Response?
        for i in 0..<400 {
            let r = try client.postJSON(stack.baseURL + "/async", #"{"text": "\#(text)\#(i)", "callback_url": "http://127.0.0.1:9/x"}"#)
            if r.status != 202 {
                refusal = r
                break
            }
        }
        let full = try #require(refusal, "1 MiB never filled")
        #expect(full.status == 503)
        #expect((full.json?["error"] as? [String: Any])?["code"] as? String == "storage_full", "\(full.text)")
        #expect(full.headers["retry-after"] != nil)

        // /sync still answers (the work is done), but the lost record is logged and counted, not silent. An
        // async job reserves room for its result, so a few /sync records may still fit after the first
        // refusal (how many depends on where the bound falls among pages): sent until one does not.
        var lost = false
        for _ in 0..<100 where !lost {
            let sync = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(text)"}"#)
            #expect(sync.status == 200)
            lost = stack.log(.workfcgi).contains("sync result answered but not recorded")
        }
        #expect(lost, "a /sync record was refused at the bound")
        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_sync_records_lost_total{reason="store_full"} 1"#), "\(metrics)")
        #expect(metrics.contains("workfcgi_store_full_refusals_total 1"))
        #expect(stack.log(.workfcgi).contains("sync result answered but not recorded"))
        #expect(try client.get(stack.baseURL + "/healthz").status == 200, "reads still work")
    }

    /// 9,000 bytes of ASCII text, 20 repeats: a result of about 180 KB once run.
    static let bigText = #"{"text": "\#(String(repeating: "ab ", count: 3_000))", "count": 20"#

    static func storage(_ client: HTTPClient, _ stack: Stack) throws -> [String: Any] {
        try client.get(stack.baseURL + "/healthz").json?["storage"] as? [String: Any] ?? [:]
    }

    /// One client fills the store with /sync records while another's acknowledged jobs wait (deliveryd not
    /// running): every job that got its 202 is then worked, delivered once and recorded, and the store
    /// makes room by itself. Before: the results did not fit, the recorder's write failed, and each job
    /// was sent again at every lease expiry with no attempt recorded.
    @Test func acknowledgedJobsArriveOnceWhenAnotherClientFillsTheStore() async throws {
        let stack = try Stack(settings: ["WORKFCGI_MAX_DB_SIZE": "2m", "WORKFCGI_CLIENT_STORAGE_LIMIT": "2m", "WORKFCGI_LEASE": "3s"])
        try stack.start([.workfcgi, .nginx])
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let filler = HTTPClient()
        let other = HTTPClient(sourceAddress: "127.0.0.2")
        var acknowledged: [String] = []
        for _ in 0..<5 {
            let r = try other.postJSON(stack.baseURL + "/async", Self.bigText + #", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
            #expect(r.status == 202, "\(r.text)")
            if let id = r.json?["request_id"] as? String { acknowledged.append(id) }
        }
        var lost = false
        for _ in 0..<40 where !lost {
            #expect(try filler.postJSON(stack.baseURL + "/sync", Self.bigText + "}").status == 200)
            // The series is there from the start at 0: the store is full once it has counted a record.
            lost = try !filler.get(stack.baseURL + "/metrics").text.contains(#"workfcgi_sync_records_lost_total{reason="store_full"} 0"#)
        }
        #expect(lost, "the store never filled")
        let refused = try other.postJSON(stack.baseURL + "/async", Self.bigText + #", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        #expect(refused.status == 503 && refused.text.contains("storage_full"), "\(refused.text)")
        let health = try filler.get(stack.baseURL + "/healthz").json ?? [:]
        #expect((health["storage"] as? [String: Any])?["state"] as? String == "full", "\(health)")
        #expect(health["status"] as? String == "degraded", "a full store is not ok")

        try stack.start([.deliveryd])
        for id in acknowledged { try stack.waitForStatus(id, "completed", timeout: 30) }
        // Past a lease expiry: a job whose record had failed would be sent again now.
        try await Task.sleep(for: .seconds(4))
        for id in acknowledged {
            #expect(receiver.calls.filter { $0.webhookID == id }.count == 1, "\(id) delivered exactly once")
            #expect(try stack.attemptStatuses(id) == [200], "\(id)'s attempt is recorded")
        }
        // Near the bound deliveryd deletes the oldest sync records: the store takes jobs again by itself.
        try stack.waitFor("room made") { (try? Self.storage(filler, stack))?["state"] as? String == "ok" }
        #expect(try filler.postJSON(stack.baseURL + "/async", #"{"text": "again", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#).status == 202)
        #expect(stack.log(.deliveryd).contains("deleted the oldest sync records"))
        await receiver.stop()
    }

    /// One address cannot take the store from the others: past its share (WORKFCGI_CLIENT_STORAGE_LIMIT,
    /// by default an eighth of the bound) its /sync and /async get 503 client_storage_full; another's still work.
    @Test func oneClientCannotTakeTheStoreFromOthers() throws {
        let stack = try Stack(settings: ["WORKFCGI_MAX_DB_SIZE": "8m"])
        try stack.start([.workfcgi, .nginx])
        let filler = HTTPClient()
        var refusal: HTTPClient.Response?
        for _ in 0..<30 {
            let r = try filler.postJSON(stack.baseURL + "/sync", Self.bigText + "}")
            if r.status != 200 {
                refusal = r
                break
            }
        }
        let full = try #require(refusal, "one client stored 30 records of 190 KB in an 8 MiB store")
        #expect(full.status == 503)
        #expect((full.json?["error"] as? [String: Any])?["code"] as? String == "client_storage_full", "\(full.text)")
        #expect(full.headers["retry-after"] != nil)
        let async = try filler.postJSON(stack.baseURL + "/async", Self.bigText + #", "callback_url": "http://127.0.0.1:9/x"}"#)
        #expect((async.json?["error"] as? [String: Any])?["code"] as? String == "client_storage_full", "\(async.text)")

        let other = HTTPClient(sourceAddress: "127.0.0.2")
        #expect(try other.postJSON(stack.baseURL + "/sync", Self.bigText + "}").status == 200)
        #expect(try other.postJSON(stack.baseURL + "/async", #"{"text": "x", "callback_url": "http://127.0.0.1:9/x"}"#).status == 202)
        #expect(try Self.storage(filler, stack)["state"] as? String == "ok", "one share is not the store")
        #expect(try filler.get(stack.baseURL + "/metrics").text.contains("workfcgi_client_storage_full_refusals_total 2"))
    }

    /// workfcgi at 1 MiB and deliveryd at the default 4 GiB: the bound is workfcgi's, stored in the database,
    /// and holds although deliveryd grows the file with results (SQLite lets a connection's max_page_count
    /// follow a file another connection grew). Before: every job was accepted and the file passed 4 MB.
    @Test(.disabled(if: Stack.onPostgres, "SQLite's file size and max_page_count")) func daemonsGivenDifferentBoundsHoldOne() async throws {
        let stack = try Stack(
            settings: ["WORKFCGI_CLIENT_STORAGE_LIMIT": "64m"],
            serviceSettings: [.workfcgi: ["WORKFCGI_MAX_DB_SIZE": "1m"]])
        try stack.start([.workfcgi, .nginx])
        try stack.start([.deliveryd])
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let client = HTTPClient()
        var accepted = 0
        var refusals: [String] = []
        // Not stopping at the first refusal: before, deliveryd's results grew the file, and workfcgi's limit followed.
        for i in 0..<150 {
            let text = String(repeating: "x ", count: 4_500) + "\(i)"
            let r = try client.postJSON(
                stack.baseURL + "/async", #"{"text": "\#(text)", "count": 5, "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
            if r.status == 202 {
                accepted += 1
            } else {
                refusals.append((r.json?["error"] as? [String: Any])?["code"] as? String ?? r.text)
            }
            if i % 10 == 9 { try await Task.sleep(for: .milliseconds(200)) }  // deliveryd writes results meanwhile
        }
        #expect(!refusals.isEmpty && refusals.allSatisfy { $0 == "storage_full" }, "\(accepted) accepted; \(Set(refusals))")
        let count = accepted
        #expect(await receiver.wait(timeout: 30) { $0.count >= count }, "every accepted job is delivered")
        let file = try FileManager.default.attributesOfItem(atPath: stack.runDirectory + "/workfcgi.db")[.size] as? Int ?? 0
        #expect(file <= 3 << 20, "\(file) bytes: the bound (1 MiB) plus deliveryd's headroom (2 MiB) at most")
        #expect(try Self.storage(client, stack)["bound_bytes"] as? Int == 1 << 20)
        #expect(stack.log(.deliveryd).contains("differs from the bound workfcgi stored"))
        await receiver.stop()
    }

    /// deliveryd cannot record an attempt whose callback went out (another process holds SQLite's write lock
    /// past deliveryd's busy timeout, for its claim and then its record, as a full disk would refuse it) while
    /// the job's lease runs out: the record is tried again until it is written, and the job is not sent again.
    /// Before: the record was dropped, and the next claim sent the job again.
    @Test(.disabled(if: Stack.onPostgres, "locks the SQLite file; on PostgreSQL PostgresOutageTests fails records by stopping the server")) func aFailedRecordIsRetriedAndTheJobNotSentAgain() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_LEASE": "3s"])
        let id = try stack.submit(#"{"text": "once", "callback_url": "http://127.0.0.1:\#(port)/slow/1500"}"#)
        try stack.waitFor("the claim") { (try? stack.record(id))?["status"] as? String == "processing" }
        // 20 s: deliveryd's claim loop, its heartbeat thread and its recorder queue on the writers' flock and
        // each wait out the 5 s busy timeout in turn, so the record's own turn must fall inside the lock.
        let marker = stack.directory.appendingPathComponent("locked").path
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = [
            "python3", "-c",
            """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN IMMEDIATE")
            open(sys.argv[2], "w").close()
            time.sleep(20)
            c.execute("ROLLBACK")
            """, stack.runDirectory + "/workfcgi.db", marker,
        ]
        try locker.run()
        try stack.waitFor("the write lock taken") { FileManager.default.fileExists(atPath: marker) }
        // Waited for without blocking a thread of the test's pool, where the callback receivers run.
        while locker.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(stack.log(.deliveryd).contains("attempts failed to record"), "the lock outlasted deliveryd's busy timeout")
        try stack.waitForStatus(id, "completed", timeout: 15)
        try await Task.sleep(for: .seconds(4))  // past another lease
        #expect(receiver.calls.filter { $0.webhookID == id }.count == 1, "sent once")
        #expect(try stack.attemptStatuses(id) == [200], "and recorded")
        await receiver.stop()
    }
}
