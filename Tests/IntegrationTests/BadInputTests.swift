import Foundation
import Harness
import Testing

/// Bad input through the real stack: always a 4xx JSON error with the right code, never a 5xx.
@Suite(.serialized, .timeLimit(.minutes(2))) struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        var method = "POST"
        var path = "/sync"
        var contentType: String? = "application/json"
        var body: [UInt8]? = nil
        var status: Int
        var code: String
        var description: String { "\(method) \(path) \(body.map { String(decoding: $0.prefix(60), as: UTF8.self) } ?? "")" }
    }

    static func json(_ text: String, _ status: Int, _ code: String, path: String = "/sync") -> Case {
        Case(path: path, body: Array(text.utf8), status: status, code: code)
    }

    static let cases: [Case] = [
        json("", 400, "bad_json"),
        json("{", 400, "bad_json"),
        json(#"{"input_data": "a",}"#, 400, "bad_json"),
        Case(body: [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d], status: 400, code: "bad_json"),
        json("[]", 422, "invalid_body"),
        json("null", 422, "invalid_body"),
        json("{}", 422, "missing_field"),
        json(#"{"op": "sleep"}"#, 422, "unknown_op"),
        json(#"{"input_data": "a", "iterations": -1}"#, 422, "out_of_range"),
        json(#"{"input_data": "a", "iterations": "many"}"#, 422, "invalid_type"),
        json(#"{"input_data": "a", "bogus": 1}"#, 422, "unknown_field"),
        json(#"{"records": 60}"#, 422, "use_async"),
        json(#"{"payload": {"operation": "prime", "complexity": 0}}"#, 422, "out_of_range"),
        json(#"{"text": "x"}"#, 422, "missing_field", path: "/async"),
        json(#"{"text": "x", "callback_url": "ftp://127.0.0.1/"}"#, 422, "invalid_callback_url", path: "/async"),
        json(#"{"text": "x", "callback_url": "http://u:p@127.0.0.1/"}"#, 422, "invalid_callback_url", path: "/async"),
        json(#"{"text": "x", "callback_url": "http://2130706433/"}"#, 422, "invalid_callback_url", path: "/async"),
        json(#"{"text": "x", "callback_url": "not a url"}"#, 422, "invalid_callback_url", path: "/async"),
        Case(contentType: "text/plain", body: Array(#"{"text": "x"}"#.utf8), status: 415, code: "unsupported_media_type"),
        Case(contentType: nil, body: Array(#"{"text": "x"}"#.utf8), status: 415, code: "unsupported_media_type"),
        Case(body: Array(repeating: UInt8(ascii: "a"), count: 1_100_000), status: 413, code: "body_too_large"),
        Case(method: "GET", path: "/sync", contentType: nil, status: 405, code: "method_not_allowed"),
        Case(method: "DELETE", path: "/requests", contentType: nil, status: 405, code: "method_not_allowed"),
        Case(method: "GET", path: "/nope", contentType: nil, status: 404, code: "not_found"),
        Case(method: "GET", path: "/requests/not-an-id", contentType: nil, status: 404, code: "not_found"),
        Case(method: "GET", path: "/requests/01a21618-28c3-7fb4-a704-19a00cf1c59d", contentType: nil, status: 404, code: "not_found"),
        Case(method: "GET", path: "/requests?limit=0", contentType: nil, status: 400, code: "invalid_query"),
        Case(method: "GET", path: "/requests?status=lost", contentType: nil, status: 400, code: "invalid_query"),
        Case(method: "GET", path: "/requests?mode=both", contentType: nil, status: 400, code: "invalid_query"),
        Case(method: "GET", path: "/requests?sort=asc", contentType: nil, status: 400, code: "invalid_query"),
    ]

    @Test func everyBadRequestGetsAJSONError() throws {
        let stack = try Stack()
        try stack.start()
        let client = HTTPClient()
        for c in Self.cases {
            var headers: [String: String] = [:]
            if let type = c.contentType { headers["Content-Type"] = type }
            let r = try client.request(c.method, stack.baseURL + c.path, body: c.body, headers: headers)
            #expect(r.status == c.status, "\(c): \(r.text.prefix(200))")
            #expect(r.headers["content-type"]?.hasPrefix("application/json") == true, "\(c)")
            #expect((r.json?["error"] as? [String: Any])?["code"] as? String == c.code, "\(c): \(r.text.prefix(200))")
            if c.status == 405 { #expect(r.headers["allow"] != nil, "\(c)") }
        }
        // Nothing refused was written.
        let listing = try #require(try client.get(stack.baseURL + "/requests").json)
        #expect((listing["requests"] as? [Any])?.isEmpty == true)
        // And the stack is still healthy.
        #expect(try client.get(stack.baseURL + "/healthz").status == 200)
    }

    @Test func idempotencyKeyReturnsTheFirst202() throws {
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        let client = HTTPClient()
        let body = #"{"text": "once", "callback_url": "http://127.0.0.1:9/x"}"#
        let first = try client.postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "order-42"])
        let second = try client.postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "order-42"])
        #expect(first.status == 202 && second.status == 202)
        #expect(first.json?["request_id"] as? String == second.json?["request_id"] as? String)
        #expect(second.headers["idempotent-replayed"] == "true")
        let third = try client.postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "order-43"])
        #expect(third.json?["request_id"] as? String != first.json?["request_id"] as? String)
        let reused = try client.postJSON(
            stack.baseURL + "/async", #"{"text": "twice", "callback_url": "http://127.0.0.1:9/x"}"#, headers: ["Idempotency-Key": "order-42"])
        #expect(reused.status == 422)
        #expect((reused.json?["error"] as? [String: Any])?["code"] as? String == "idempotency_key_reused")
        // Another client's identical key is its own.
        let other = try HTTPClient(sourceAddress: "127.0.0.2").postJSON(
            "http://127.0.0.1:\(stack.port)/async", body, headers: ["Idempotency-Key": "order-42"])
        #expect(other.status == 202)
        #expect(other.json?["request_id"] as? String != first.json?["request_id"] as? String)
    }
}
