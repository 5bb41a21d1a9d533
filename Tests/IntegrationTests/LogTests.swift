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
}
