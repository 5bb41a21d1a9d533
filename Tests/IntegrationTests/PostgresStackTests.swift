import Foundation
import Harness
import Testing

/// The whole stack on PostgreSQL (WORKFCGI_DATABASE_URL, a fresh schema in the tests' private cluster):
/// nginx → workfcgi → PostgreSQL → deliveryd → a callback receiver. No file database is created.
@Suite(.serialized, .timeLimit(.minutes(2))) struct PostgresStackTests {
    @Test func syncAndAsyncOnPostgreSQL() async throws {
        let url = try PostgresCluster.shared().freshDatabase()
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_DATABASE_URL": url])
        let client = HTTPClient()

        let sync = try client.postJSON(stack.baseURL + "/sync", #"{"input_data": "hello", "iterations": 2}"#)
        #expect(sync.status == 200)
        let syncID = try #require(sync.json?["request_id"] as? String)
        #expect(try stack.record(syncID)["status"] as? String == "completed")

        let response = try client.postJSON(
            stack.baseURL + "/async", #"{"text": "Hello world", "count": 3, "callback_url": "http://127.0.0.1:\#(port)/ok/a"}"#)
        #expect(response.status == 202)
        let id = try #require(response.json?["request_id"] as? String)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } })
        try stack.waitForStatus(id, "completed")
        #expect(try stack.attemptStatuses(id) == [200])
        #expect(!FileManager.default.fileExists(atPath: stack.runDirectory + "/workfcgi.db"), "SQLite is not used")
        await receiver.stop()
    }
}

extension PostgresStackTests {
    /// deliveryd on PostgreSQL is woken by the database's notifications, not only by its host's doorbell: with
    /// the doorbell's socket gone (as for a deliveryd on another host than the workfcgi that committed) and a
    /// 30 s poll, a job and a redeliver reach the receiver within seconds; and again after the listener's
    /// connection was ended by the server, once it has listened again by itself.
    @Test func deliverydIsWokenByNotifyWhenNoDoorbellReachesIt() async throws {
        let cluster = try PostgresCluster.shared()
        let url = try cluster.freshDatabase()
        let schema = try #require(url.components(separatedBy: "search_path%3D").last)
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_DATABASE_URL": url, "WORKFCGI_POLL_INTERVAL": "30s", "WORKFCGI_NODE_TIMEOUT": "60s"])
        let listener = "SELECT pid FROM pg_stat_activity WHERE application_name = 'workfcgi-listen' AND query LIKE '%\(schema)%'"
        try stack.waitFor("deliveryd's listener") { (try? cluster.query(listener))?.count == 1 }
        // workfcgi rings a socket that is no longer there: only a notification can wake deliveryd before its poll.
        #expect(unlink(stack.runDirectory + "/deliveryd.sock") == 0)
        let body = #"{"text": "Hello world", "count": 3, "callback_url": "http://127.0.0.1:\#(port)/ok/a"}"#

        let a = try stack.submit(body)
        #expect(await receiver.wait(timeout: 5) { $0.contains { $0.webhookID == a } }, "woken by NOTIFY, not by the 30 s poll")
        try stack.waitForStatus(a, "completed")
        let redeliver = try HTTPClient().request("POST", stack.baseURL + "/requests/\(a)/redeliver")
        #expect(redeliver.status / 100 == 2, "\(redeliver.text)")
        #expect(await receiver.wait(timeout: 5) { $0.filter { $0.webhookID == a }.count == 2 }, "a redeliver wakes it too")

        let pid = try #require(try cluster.query(listener).first)
        #expect(try cluster.query("SELECT pg_terminate_backend(\(pid))") == ["t"])
        try stack.waitFor("deliveryd listening again") {
            guard let now = try? cluster.query(listener) else { return false }
            return now.count == 1 && now != [pid]
        }
        let b = try stack.submit(body)
        #expect(await receiver.wait(timeout: 5) { $0.contains { $0.webhookID == b } }, "the new connection wakes it")
        #expect(stack.log(.deliveryd).contains("the listening connection was lost"), "\(stack.log(.deliveryd))")
        await receiver.stop()
        stack.stopAll()
    }
}
