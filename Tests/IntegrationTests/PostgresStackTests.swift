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
