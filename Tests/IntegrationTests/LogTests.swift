import Foundation
import Harness
import Testing

/// What an operator reads: one line per request at info, with the request id, nothing a client sent that
/// could be secret, as JSON when asked.
@Suite(.serialized) struct LogTests {
    @Test func jsonAccessLinesCarryTheRequestIdAndNoBodies() throws {
        let stack = try Stack(settings: ["WORKFCGI_LOG_FORMAT": "json"])
        try stack.start()
        defer { stack.stopAll() }
        let id = try stack.submit(#"{"input_data": "secret-input-xyz", "callback_url": "http://127.0.0.1:9/?token=secret-token"}"#)
        let refused = try HTTPClient().postJSON(stack.baseURL + "/sync", #"{"input_data": "secret-input-xyz", "iterations": 0}"#)
        #expect(refused.status == 422)
        try stack.waitFor("access lines") { stack.log(.workfcgi).contains("\"status\":\"422\"") }

        let lines = stack.log(.workfcgi).split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == lines.count, "every line is one JSON object:\n\(lines.joined(separator: "\n"))")
        let requests = objects.filter { $0["message"] as? String == "request" }
        let accepted = try #require(requests.first { $0["route"] as? String == "async" }, "\(requests)")
        #expect(accepted["status"] as? String == "202" && accepted["request_id"] as? String == id && accepted["method"] as? String == "POST")
        #expect(accepted["level"] as? String == "info" && accepted["duration_ms"] != nil && accepted["time"] != nil)
        #expect(requests.contains { $0["route"] as? String == "sync" && $0["status"] as? String == "422" })
        let all = stack.log(.workfcgi) + stack.log(.deliveryd)
        #expect(!all.contains("secret-input-xyz") && !all.contains("secret-token"), "no bodies or URLs at info")
        #expect(!all.contains(Stack.secret))
    }

    /// One job followed from nginx's access line (request_id=) through workfcgi's, with its replay marked.
    @Test func oneRequestIdFromNginxToWorkfcgiAndReplaysMarked() throws {
        let stack = try Stack(settings: ["WORKFCGI_LOG_FORMAT": "json"])
        try stack.start()
        defer { stack.stopAll() }
        let body = #"{"text": "follow me", "callback_url": "http://127.0.0.1:9/"}"#
        let first = try HTTPClient().postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "k-1"])
        let again = try HTTPClient().postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "k-1"])
        func header(_ r: HTTPClient.Response, _ name: String) -> String? { r.headers.first { $0.key.lowercased() == name }?.value }
        let id = try #require(first.json?["request_id"] as? String)
        #expect(header(first, "x-request-id") == id && header(again, "x-request-id") == id)
        #expect(header(again, "idempotent-replayed") == "true")
        try stack.waitFor("nginx's access lines (flushed each second)", timeout: 5) {
            ((try? String(contentsOfFile: stack.runDirectory + "/nginx-access.log", encoding: .utf8)) ?? "")
                .components(separatedBy: "request_id=\(id)").count == 3
        }
        let requests = stack.log(.workfcgi).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["message"] as? String == "request" && $0["request_id"] as? String == id }
        #expect(requests.count == 2 && requests[0]["replayed"] == nil && requests[1]["replayed"] as? String == "true", "\(requests)")
    }

    /// With the setting on, the same requests do leave lines: the control that makes the absence meaningful.
    @Test(arguments: [true, false]) func accessLinesFollowTheSetting(on: Bool) throws {
        let stack = try Stack(settings: ["WORKFCGI_ACCESS_LOG": on ? "true" : "false"])
        try stack.start()
        defer { stack.stopAll() }
        for _ in 0..<3 { _ = try HTTPClient().get(stack.baseURL + "/healthz") }
        #expect(try HTTPClient().get(stack.baseURL + "/nope").status == 404)
        if on { try stack.waitFor("access lines") { stack.log(.workfcgi).contains("route=other") } }
        let log = stack.log(.workfcgi)
        #expect(log.contains("started"), "info lines are written and read: \(log)")
        #expect(log.contains("route=healthz") == on && log.contains("route=") == on, "\(log)")
    }

    /// deliveryd's line per attempt in the default text format: times to the millisecond, a retry at warning
    /// with its HTTP status and ISO retry time, giving up at error with the reason; no raw epoch milliseconds.
    @Test func attemptLinesSayWhatFailedAtTheirLevel() async throws {
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let stack = try Stack(settings: ["WORKFCGI_RETRY_SCHEDULE": "200ms"])
        try stack.start()
        defer { stack.stopAll() }
        let id = try stack.submit(#"{"text": "fails", "callback_url": "http://127.0.0.1:\#(port)/status/500"}"#)
        try stack.waitForStatus(id, "failed")
        try stack.waitFor("the attempt lines") { stack.log(.deliveryd).contains("outcome=gave_up") }
        let lines = stack.log(.deliveryd).split(separator: "\n").filter { $0.contains("callback attempt") && $0.contains(id) }
        let stamp = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /#
        #expect(lines.count == 2 && lines.allSatisfy { $0.firstMatch(of: stamp) != nil }, "\(lines)")
        let retry = try #require(lines.first { $0.contains("outcome=retry") }, "\(lines)")
        #expect(retry.contains(" warning deliveryd") && retry.contains("http_status=500") && retry.contains("error=HTTP 500"), "\(retry)")
        #expect(retry.firstMatch(of: #/retry_at=\d{4}-\d\d-\d\dT[0-9:.]+Z/#) != nil, "\(retry)")
        let gaveUp = try #require(lines.first { $0.contains("outcome=gave_up") }, "\(lines)")
        #expect(gaveUp.contains(" error deliveryd") && gaveUp.contains("http_status=500") && gaveUp.contains("reason="), "\(gaveUp)")
        #expect(stack.log(.deliveryd).firstMatch(of: #/=1[789]\d{11}\b/#) == nil, "no epoch milliseconds in the log")
        await receiver.stop()
    }
}
