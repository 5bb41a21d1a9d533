import Foundation
import Harness
import Testing

/// The params and bodies other front ends send, straight to the sockets: the path in SCRIPT_NAME + PATH_INFO,
/// a body with no CONTENT_LENGTH (Apache, chunked) or -1 (Caddy), and one past the limit with no length at all.
@Suite(.serialized, .timeLimit(.minutes(2))) struct FastCGIParamsTests {
    @Test func bodiesAreReadToTheirEndWhateverTheLengthSays() throws {
        let stack = try Stack(settings: ["WORKFCGI_MAX_BODY_BYTES": "2048"])
        try stack.start([.workfcgi])
        let body = Array(#"{"text": "streamed"}"#.utf8)
        let base: [(name: String, value: String)] = [
            ("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", "/sync"), ("CONTENT_TYPE", "application/json"), ("REMOTE_ADDR", "127.0.0.1"),
        ]
        for length in [nil, "-1", "", "3"] as [String?] {
            let params = base + (length.map { [("CONTENT_LENGTH", $0)] } ?? [])
            let answer = try FastCGIClient.request(socket: stack.runDirectory + "/sync.sock", params: params, body: body)
            #expect(answer.status == 200, "CONTENT_LENGTH=\(length ?? "absent"): \(answer.body)")
        }
        let large = Array(repeating: UInt8(ascii: " "), count: 5000) + body
        let tooLarge = try FastCGIClient.request(socket: stack.runDirectory + "/sync.sock", params: base, body: large)
        #expect(tooLarge.status == 413, "\(tooLarge.body)")
        // The path split as lighttpd splits it: the record, not the listing.
        let sync = try FastCGIClient.request(socket: stack.runDirectory + "/sync.sock", params: base + [("CONTENT_LENGTH", "\(body.count)")], body: body)
        let id = try #require((try? JSONSerialization.jsonObject(with: Data(sync.body.utf8))) as? [String: Any])["request_id"] as? String
        let record = try FastCGIClient.request(
            socket: stack.runDirectory + "/api.sock",
            params: [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/requests"), ("PATH_INFO", "/\(id ?? "")"), ("REMOTE_ADDR", "127.0.0.2")])
        #expect(record.status == 200 && record.body.contains(#""mode":"sync""#), "\(record.body)")
        // Caddy's empty DOCUMENT_URI with the path in PATH_INFO.
        let health = try FastCGIClient.request(
            socket: stack.runDirectory + "/api.sock",
            params: [("REQUEST_METHOD", "GET"), ("DOCUMENT_URI", ""), ("SCRIPT_NAME", ""), ("PATH_INFO", "/healthz")])
        #expect(health.status == 200 || health.status == 503, "\(health.body)")
        #expect(health.body.contains("queue_depth"))
    }
}
