import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 20 items 11 and 12 through the real stack: a /sync computation and a deliveryd job held in flight
/// (a handler that sleeps, a receiver that answers late) are shown with their op and age by GET /status,
/// /metrics and /ui; the last hour's chart counts the minute's answers; the slow log names a slow request
/// and not a fast one.
@Suite(.serialized, .timeLimit(.minutes(2))) struct NowViewTests {
    @Test func whatIsHappeningNowAndWhatHappened() async throws {
        var template = Array((NSTemporaryDirectory() + "/workfcgi-it-now-XXXXXX").utf8CString)
        let folder = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "#!/bin/sh\nsleep 3\necho '\"rested\"'\n".write(toFile: folder + "/hold", atomically: false, encoding: .utf8)
        chmod(folder + "/hold", 0o755)

        let stack = try Stack(settings: [
            "WORKFCGI_HANDLERS_DIR": folder, "WORKFCGI_HANDLER_TIMEOUT": "10s", "WORKFCGI_SLOW_LOG": "1s", "WORKFCGI_LEASE": "20s",
        ])
        try stack.start()
        defer { stack.stopAll() }
        // Answers each callback 4 s late: the job stays in deliveryd's hand (delivering) meanwhile.
        let receiver = try CallbackReceiver(delayMilliseconds: 4000)
        let port = try await receiver.start()
        let client = HTTPClient()

        let fast = try client.postJSON(stack.baseURL + "/sync", #"{"input_data": "quick", "iterations": 1}"#)
        #expect(fast.status == 200)
        let fastID = try #require(fast.json?["request_id"] as? String)

        let held = Thread.detachNewThreadAndWait {
            try? HTTPClient().postJSON(stack.baseURL + "/sync", #"{"handler": "hold", "input": {}}"#)
        }
        let asyncID = try stack.submit(#"{"text": "held", "count": 1, "callback_url": "http://127.0.0.1:\#(port)/ok/now"}"#)

        // Both in flight at once: /status lists them with op and age.
        var status: [String: Any] = [:]
        try stack.waitFor("the sync computation and the delivering job in /status", timeout: 10) {
            guard let json = try? client.get(stack.baseURL + "/status").json else { return false }
            status = json
            let sync = (json["sync"] as? [String: Any])?["computations"] as? [[String: Any]] ?? []
            let inHand = (json["deliveryd"] as? [String: Any])?["jobs_in_hand"] as? [[String: Any]] ?? []
            return sync.contains { $0["handler"] as? String == "hold" && ($0["age_ms"] as? Double ?? 0) > 0 }
                && inHand.contains { $0["request_id"] as? String == asyncID && $0["status"] as? String == "delivering" }
        }
        let computation = try #require(((status["sync"] as? [String: Any])?["computations"] as? [[String: Any]])?.first)
        #expect(computation["op"] as? String == "handler")
        let job = try #require(((status["deliveryd"] as? [String: Any])?["jobs_in_hand"] as? [[String: Any]])?.first { $0["request_id"] as? String == asyncID })
        #expect(job["op"] as? String == "text" && (job["age_ms"] as? Double ?? -1) >= 0)
        let pools = try #require(status["pools"] as? [[String: Any]])
        #expect(Set(pools.compactMap { $0["pool"] as? String }) == ["sync", "api"])
        #expect(pools.contains { $0["pool"] as? String == "sync" && ($0["busy"] as? Int ?? 0) >= 1 }, "\(pools)")
        #expect((status["backlog"] as? [String: Any])?["limit"] as? Int ?? 0 > 0)

        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_sync_running{op="handler"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("sync_running") })")
        #expect(metrics.contains(#"workfcgi_deliveryd_in_hand{op="text"} 1"#))
        #expect(metrics.contains("workfcgi_pool_busy_threads{pool=\"sync\"}"))

        let page = try client.get(stack.baseURL + "/ui").text
        #expect(page.contains("<h2 id=now>Now</h2>") && page.contains("<h2 id=history>The last hour</h2>"))
        #expect(page.contains(asyncID), "the job in hand is listed on the page")
        #expect(page.contains("<svg"), "the last hour's charts are drawn on the server")

        // The held /sync ends; the slow log names it (over 1 s) and not the quick one.
        let heldAnswer = held()
        #expect(heldAnswer??.status == 200)
        let heldID = try #require(heldAnswer??.json?["request_id"] as? String)
        try stack.waitFor("the slow log line") { stack.log(.workfcgi).contains("slow request") }
        let slowLines = stack.log(.workfcgi).split(separator: "\n").filter { $0.contains("slow request") }
        #expect(slowLines.contains { $0.contains(heldID) && $0.contains("op=handler") }, "\(slowLines)")
        #expect(!slowLines.contains { $0.contains(fastID) }, "a request under the threshold is not logged as slow")

        // The charts carry the minute's counts: both /sync answers (the quick and the held one) in the answers legend.
        let after = try client.get(stack.baseURL + "/ui").text
        #expect(after.contains("sync (2 in the hour"), "\(after.components(separatedBy: "chart-answers").last?.prefix(1500) ?? "")")
        #expect(after.contains(" sync ") && after.contains("</title></circle>"), "each minute's count as a tooltip")
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == asyncID } })
        try stack.waitFor("nothing in hand once delivered") {
            let inHand = ((try? client.get(stack.baseURL + "/status").json)?["deliveryd"] as? [String: Any])?["jobs_in_hand"] as? [Any]
            return inHand?.isEmpty == true
        }
        await receiver.stop()
    }
}

extension Thread {
    /// Runs `body` on a new thread; the returned function waits for its value.
    static func detachNewThreadAndWait<T: Sendable>(_ body: @escaping @Sendable () -> T) -> () -> T? {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Thread.detachNewThread {
            box.value = body()
            done.signal()
        }
        return {
            done.wait()
            return box.value
        }
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
