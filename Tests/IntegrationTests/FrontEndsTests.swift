import Delivery
import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Each ready config (nginx/site.conf and frontends/ for Apache httpd, lighttpd and Caddy), run by the
/// real server from Debian's packages in front of the real workfcgi and deliveryd: the API works the same
/// behind every one, and each adds what it can of nginx's safety (operator allow-list, body limit, its
/// own errors in JSON).
@Suite(.serialized, .timeLimit(.minutes(3))) struct FrontEndsTests {
    @Test(arguments: Stack.FrontEnd.allCases) func theAPIWorksBehind(_ frontEnd: Stack.FrontEnd) async throws {
        let (stack, receiver, receiverPort) = try await Self.started(frontEnd)
        let client = HTTPClient()

        let health = try client.get(stack.baseURL + "/healthz")
        #expect(health.status == 200, "\(health.text)")
        #expect(health.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(health.json?["db_connected"] as? Bool == true, "\(health.text)")
        let head = try client.request("HEAD", stack.baseURL + "/healthz")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)

        let sync = try client.postJSON(stack.baseURL + "/sync", #"{"text": "behind every front end"}"#)
        #expect(sync.status == 200, "\(sync.text)")
        #expect(sync.json?["status"] as? String == "completed", "\(sync.text)")
        let syncID = try #require(sync.json?["request_id"] as? String, "\(sync.text)")

        // The record itself, not the listing (a path split into SCRIPT_NAME + PATH_INFO must not lose the id).
        let record = try client.get(stack.baseURL + "/requests/\(syncID)")
        #expect(record.status == 200, "\(record.text)")
        #expect(record.json?["request_id"] as? String == syncID, "\(record.text)")
        #expect(record.json?["requests"] == nil, "the listing answered: \(record.text)")

        let accepted = try client.postJSON(
            stack.baseURL + "/async", #"{"text": "signed callback", "callback_url": "http://127.0.0.1:\#(receiverPort)/ok"}"#)
        #expect(accepted.status == 202, "\(accepted.text)")
        let asyncID = try #require(accepted.json?["request_id"] as? String, "\(accepted.text)")
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == asyncID } })
        if let call = receiver.calls.first(where: { $0.webhookID == asyncID }), let timestamp = Int(call.timestamp) {
            let signer = try WebhookSigner(secrets: [Stack.secret])
            #expect(signer.verify(id: asyncID, timestamp: timestamp, body: call.body, header: call.signature, now: Int(Date().timeIntervalSince1970)))
        }
        try stack.waitForStatus(asyncID, "completed")

        // Percent-encoded characters in an id: a JSON 404, never a crash or the listing.
        for path in ["/requests/abc%25def", "/requests/abc%2Fdef", "/requests/%20"] {
            let answer = try client.get(stack.baseURL + path)
            #expect(answer.status == 404, "\(path): \(answer.text)")
            #expect(Self.errorCode(answer) == "not_found", "\(path): \(answer.headers) \(answer.text)")
        }

        // A chunked body whose chunks arrive apart (the front end streams it; there is no CONTENT_LENGTH).
        let chunked = try RawHTTP.exchange(
            port: stack.port,
            [
                "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    + "9\r\n{\"text\": \r\n",
                "10\r\n\"in two chunks\"}\r\n0\r\n\r\n",
            ])
        #expect(chunked.status == 200, "\(chunked.head)\n\(chunked.body)")
        #expect(chunked.json?["status"] as? String == "completed", "\(chunked.body)")

        let missing = try client.get(stack.baseURL + "/no-such-endpoint")
        #expect(missing.status == 404)
        #expect(Self.errorCode(missing) == "not_found", "\(missing.headers) \(missing.text)")
        let malformed = try client.postJSON(stack.baseURL + "/sync", #"{"text": "#)
        #expect(malformed.status == 400)
        #expect(Self.errorCode(malformed) == "bad_json", "\(malformed.headers) \(malformed.text)")
        await receiver.stop()
    }

    /// The config's allow-list alone: workfcgi here admits all of 127.0.0.0/8 as operators, so 127.0.0.2 is
    /// refused by the front end or by nothing (workfcgi's own rule is TrustBoundaryTests').
    @Test(arguments: Stack.FrontEnd.allCases) func operatorEndpointsAreRefusedFromOtherAddresses(_ frontEnd: Stack.FrontEnd) async throws {
        let stack = try Stack(settings: ["WORKFCGI_OPERATOR_ADDRESSES": "127.0.0.0/8,::1/128"], frontEnd: frontEnd)
        try stack.start()
        let local = HTTPClient()
        let other = HTTPClient(sourceAddress: "127.0.0.2")  // not an operator address
        let id = try #require(try local.postJSON(stack.baseURL + "/sync", #"{"text": "x"}"#).json?["request_id"] as? String)

        // The routes as spelled: 403 forbidden, in JSON.
        for (method, path) in [("GET", "/requests"), ("GET", "/requests?limit=1"), ("POST", "/requests/\(id)/redeliver"), ("GET", "/metrics"), ("GET", "/ui")] {
            // An empty body, not none: lighttpd answers a POST without Content-Length with 411.
            let answer = try other.request(method, stack.baseURL + path, body: method == "POST" ? [] : nil)
            #expect(answer.status == 403, "\(method) \(path): \(answer.text)")
            #expect(Self.errorCode(answer) == "forbidden", "\(method) \(path): \(answer.headers) \(answer.text)")
        }
        // Other spellings: refused by the front end or unknown to workfcgi (one spelling per route), never served.
        for path in ["/requests/", "//requests", "/REQUESTS", "/Metrics", "/metrics/", "/ui/", "/ui/requests/\(id)", "/requests/\(id)/redeliver/"] {
            let post = path.hasSuffix("redeliver/")
            let answer = try other.request(post ? "POST" : "GET", stack.baseURL + path, body: post ? [] : nil)
            #expect(answer.status == 403 || answer.status == 404, "\(path): \(answer.status) \(answer.text)")
            #expect(Self.errorCode(answer) != nil, "\(path): \(answer.headers) \(answer.text)")
        }
        // A client follows its own job from anywhere; operators see everything.
        #expect(try other.get(stack.baseURL + "/requests/\(id)").json?["request_id"] as? String == id)
        #expect(try local.get(stack.baseURL + "/requests").json?["requests"] != nil)
        #expect(try local.get(stack.baseURL + "/metrics").status == 200)
    }

    /// What each front end answers itself, where the config can make it JSON. Caddy cannot for what Go's
    /// HTTP server refuses before any handler runs (a malformed request, oversized headers).
    @Test(arguments: Stack.FrontEnd.allCases) func theFrontEndsOwnErrorsAreJSON(_ frontEnd: Stack.FrontEnd) async throws {
        let (stack, receiver, _) = try await Self.started(frontEnd)
        await receiver.stop()
        let long = String(repeating: "a", count: 20_000)
        // (request, status, code: nil where the front end cannot answer in JSON)
        let cases: [(String, Int, String?)] =
            switch frontEnd {
            case .nginx: [("GARBAGE", 400, "bad_request"), ("uri", 414, "uri_too_long"), ("header", 400, "header_too_large")]
            case .apache: [("GARBAGE", 400, "bad_request"), ("uri", 414, "uri_too_long"), ("header", 400, "bad_request")]
            case .lighttpd: [("GARBAGE", 400, "bad_request"), ("uri", 431, "header_too_large"), ("header", 431, "header_too_large")]
            case .caddy: [("GARBAGE", 400, nil), ("uri", 431, nil), ("header", 431, nil)]
            }
        let requests = [
            "GARBAGE": "GARBAGE\r\n\r\n",
            "uri": "GET /\(long) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "header": "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(long)\r\nConnection: close\r\n\r\n",
        ]
        for (name, status, code) in cases {
            let answer = try RawHTTP.exchange(port: stack.port, [requests[name]!])
            let label = "\(frontEnd) \(name)"
            #expect(answer.status == status, "\(label): \(answer.head)")
            if let code {
                #expect(answer.contentType.hasPrefix("application/json"), "\(label): \(answer.head)")
                #expect(answer.errorCode == code, "\(label): \(answer.body)")
            }
        }

        // Over 1 MiB: 413, whether the length is declared or the chunks just keep coming.
        let big = String(repeating: " ", count: 1_200_000)
        let declared = try RawHTTP.exchange(
            port: stack.port,
            ["POST /async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(big.utf8.count)\r\nConnection: close\r\n\r\n", big])
        #expect(declared.status == 413, "\(declared.head)")
        #expect(declared.errorCode == "body_too_large", "\(declared.head) \(declared.body)")
        let streamed = try RawHTTP.exchange(
            port: stack.port,
            [
                "POST /async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                String(big.utf8.count, radix: 16) + "\r\n" + big + "\r\n0\r\n\r\n",
            ])
        #expect(streamed.status == 413, "\(streamed.head)")
        #expect(streamed.errorCode != nil, "\(streamed.head) \(streamed.body)")

        // workfcgi down: a JSON 503 (nginx, Apache and Caddy also say when to retry).
        stack.stop(.workfcgi)
        let down = try RawHTTP.exchange(port: stack.port, ["GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
        #expect(down.status == 503, "\(down.head)")
        #expect(down.errorCode == "unavailable", "\(down.head) \(down.body)")
        if frontEnd != .lighttpd { #expect(down.header("retry-after") == "1", "\(down.head)") }
    }

    static func started(_ frontEnd: Stack.FrontEnd) async throws -> (Stack, CallbackReceiver, UInt16) {
        let stack = try Stack(frontEnd: frontEnd)
        try stack.start()
        let receiver = try CallbackReceiver()
        return (stack, receiver, try await receiver.start())
    }

    /// The API's error shape: `{"error": {"code": ..., "message": ...}}` with a JSON content type.
    static func errorCode(_ response: HTTPClient.Response) -> String? {
        guard response.headers["content-type"]?.hasPrefix("application/json") == true else { return nil }
        return RawHTTP.Answer.errorCode(response.text)
    }
}
