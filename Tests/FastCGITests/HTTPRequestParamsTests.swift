import FastCGI
import Testing

/// FastCGI params come from whoever reaches the socket: malformed values must be ignored, never trusted.
@Suite struct HTTPRequestParamsTests {
    @Test(arguments: ["inf", "-inf", "nan", "1e300", "-1700000000", "", "abc", "1e9999", "0x1p70", String(repeating: "9", count: 400)])
    func hostileRequestStartIsIgnored(value: String) {
        let request = HTTPRequest(params: [("REQUEST_METHOD", "POST"), ("REQUEST_START", value)])
        #expect(request.receivedAt == nil)
        #expect(request.queuedMilliseconds(nowMillis: 1_800_000_000_000) == 0)
        #expect(request.queuedMilliseconds(nowMillis: .max) == 0)
    }

    @Test func nginxTimestampCountsQueueing() {
        let request = HTTPRequest(params: [("REQUEST_START", "1800000000.250")])
        #expect(request.receivedAt == 1_800_000_000.25)
        #expect(request.queuedMilliseconds(nowMillis: 1_800_000_001_000) == 750)
        // A clock that went backwards never gives a negative wait.
        #expect(request.queuedMilliseconds(nowMillis: 1_700_000_000_000) == 0)
    }

    @Test func paramsMapToTheRequest() {
        let request = HTTPRequest(params: [
            ("REQUEST_METHOD", "POST"), ("DOCUMENT_URI", "/async"), ("QUERY_STRING", "a=1&b=two%20words"),
            ("CONTENT_TYPE", "application/json"), ("CONTENT_LENGTH", "12"), ("REMOTE_ADDR", "127.0.0.9"),
            ("HTTP_IDEMPOTENCY_KEY", "k1"),
        ])
        #expect(request.method == "POST")
        #expect(request.path == "/async")
        #expect(request.query == ["a": "1", "b": "two words"])
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.headers["idempotency-key"] == "k1")
        #expect(request.remoteAddress == "127.0.0.9")
        #expect(request.declaredLength == 12)
    }

    @Test func headerNamesAndFallbacks() {
        let request = HTTPRequest(params: [
            ("SCRIPT_NAME", "/healthz"), ("HTTP_X_FORWARDED_FOR", "a"), ("HTTP_Content_Type", "text/plain"),
            ("CONTENT_TYPE", "application/json"), ("REQUEST_METHOD", "GET"), ("REQUEST_METHOD", "HEAD"), ("HTTP_", "empty"),
        ])
        #expect(request.path == "/healthz")  // no DOCUMENT_URI
        #expect(request.method == "HEAD")  // later duplicates win
        #expect(request.headers["x-forwarded-for"] == "a")
        #expect(request.headers["content-type"] == "application/json")  // CONTENT_TYPE wins over the header copy
        #expect(request.headers[""] == "empty")
        #expect(HTTPRequest(params: []).method == "GET")
        #expect(HTTPRequest(params: []).path == "/")
    }

    @Test(arguments: ["-5", "abc", "99999999999999999999999", ""])
    func malformedContentLengthIsUnknown(value: String) {
        #expect(HTTPRequest(params: [("CONTENT_LENGTH", value)]).declaredLength == nil)
    }

    /// RFC 3875's path where a front end sends no DOCUMENT_URI (lighttpd, Apache) or an empty one (Caddy).
    @Test func pathFromScriptNameAndPathInfo() {
        #expect(HTTPRequest(params: [("SCRIPT_NAME", "/requests"), ("PATH_INFO", "/abc")]).path == "/requests/abc")
        #expect(HTTPRequest(params: [("DOCUMENT_URI", ""), ("SCRIPT_NAME", ""), ("PATH_INFO", "/healthz")]).path == "/healthz")
        #expect(HTTPRequest(params: [("DOCUMENT_URI", "/sync"), ("SCRIPT_NAME", "/x"), ("PATH_INFO", "/y")]).path == "/sync")
        #expect(HTTPRequest(params: [("SCRIPT_NAME", "/ui")]).path == "/ui")
        #expect(HTTPRequest(params: [("SERVER_PORT", "8080")]).serverPort == 8080)
        #expect(HTTPRequest(params: [("SERVER_PORT", "0")]).serverPort == nil)
        #expect(HTTPRequest(params: [("SERVER_PORT", "x")]).serverPort == nil)
    }

    /// X-Request-Start in the forms front ends send, used only where REQUEST_START is absent.
    @Test func requestStartHeader() {
        #expect(HTTPRequest(params: [("HTTP_X_REQUEST_START", "t=1700000000123456")]).receivedAt == 1_700_000_000.123456)
        #expect(HTTPRequest(params: [("HTTP_X_REQUEST_START", "t=1700000000123")]).receivedAt == 1_700_000_000.123)
        #expect(HTTPRequest(params: [("HTTP_X_REQUEST_START", "1700000000.5")]).receivedAt == 1_700_000_000.5)
        #expect(
            HTTPRequest(params: [("REQUEST_START", "1700000001.000"), ("HTTP_X_REQUEST_START", "t=1700000000123456")]).receivedAt
                == 1_700_000_001)
        for bad in ["t=", "t=abc", "t=-1", "t=inf", "t=nan", "t=1e400", "t=99999999999999999999999", "t=5"] {
            #expect(HTTPRequest(params: [("HTTP_X_REQUEST_START", bad)]).receivedAt == nil, "\(bad)")
        }
    }
}
