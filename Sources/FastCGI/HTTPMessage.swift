import JSON

/// An HTTP method as the front end passed it: whatever token the client sent (so no case can be missing),
/// with names for the ones the routes answer.
public struct HTTPMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }

    public static let get: HTTPMethod = "GET"
    public static let head: HTTPMethod = "HEAD"
    public static let post: HTTPMethod = "POST"
}

/// An HTTP request as a front end (nginx, Apache httpd, lighttpd, Caddy, ...) hands it over FastCGI.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The decoded path without the query: the front end's DOCUMENT_URI, or SCRIPT_NAME + PATH_INFO (RFC 3875)
    /// where it sends none.
    public var path: String
    public var query: [String: String]
    /// Header names lower-cased, e.g. "content-type", "idempotency-key".
    public var headers: [String: String]
    public var remoteAddress: String
    /// The port the front end received the request on (SERVER_PORT), when it says.
    public var serverPort: Int?
    /// The request target as the client sent it (REQUEST_URI), when the front end passes it.
    public var target: String?
    /// Header names the front end passed more than once (a client that sent two Host or Origin headers).
    public var repeatedHeaders: Set<String> = []
    public var body: [UInt8]
    /// The body was longer than the server's limit; `body` holds only a prefix.
    public var bodyTooLarge: Bool
    /// When the front end received the request, in Unix seconds (nginx's REQUEST_START = `$msec`, or the
    /// conventional `X-Request-Start: t=<microseconds>`); lets the handler count time spent queued before a
    /// FastCGI thread took the request.
    public var receivedAt: Double?
    /// CONTENT_LENGTH as declared; nil when absent, negative (Caddy sends -1 for a streamed body) or malformed.
    /// Only a hint: the body is what FCGI_STDIN carries, up to its empty closing record.
    public var declaredLength: Int?

    public init(
        method: HTTPMethod, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        remoteAddress: String = "", serverPort: Int? = nil, body: [UInt8] = [], bodyTooLarge: Bool = false,
        receivedAt: Double? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.remoteAddress = remoteAddress
        self.serverPort = serverPort
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        self.receivedAt = receivedAt
    }

    /// The request described by FastCGI params, body not yet read. Every param is untrusted (anyone who can
    /// reach the socket chooses them): a value that is malformed or out of range is ignored, never trusted,
    /// and any param may be missing.
    public init(params: [(name: String, value: String)]) {
        var method = HTTPMethod.get, documentURI: String?, scriptName = "", pathInfo = "", queryString = "", remote = ""
        var start: String?, length: String?, contentType: String?, port: String?, target: String?
        var headers: [String: String] = [:]
        var repeated: Set<String> = []
        for (name, value) in params {
            if name.utf8.starts(with: "HTTP_".utf8) {
                let header = Self.headerName(cgi: name)
                if headers.updateValue(value, forKey: header) != nil { repeated.insert(header) }
                continue
            }
            // Later duplicates win, as they would in a dictionary.
            switch name {
            case "REQUEST_METHOD": method = HTTPMethod(rawValue: value)
            case "DOCUMENT_URI": documentURI = value
            case "SCRIPT_NAME": scriptName = value
            case "PATH_INFO": pathInfo = value
            case "QUERY_STRING": queryString = value
            case "REMOTE_ADDR": remote = value
            case "SERVER_PORT": port = value
            case "REQUEST_URI": target = value
            case "REQUEST_START": start = value
            case "CONTENT_LENGTH": length = value
            case "CONTENT_TYPE": contentType = value
            default: break
            }
        }
        if let contentType, !contentType.isEmpty { headers["content-type"] = contentType }
        // nginx sends DOCUMENT_URI (its normalised $document_uri); Caddy sends it empty, lighttpd and Apache not
        // at all, and split the path between SCRIPT_NAME and PATH_INFO.
        var path = documentURI ?? ""
        if path.isEmpty { path = scriptName + pathInfo }
        if path.isEmpty { path = "/" }
        let receivedAt = start.flatMap(Self.parseTimestamp) ?? headers["x-request-start"].flatMap(Self.parseRequestStart)
        self.init(
            method: method, path: path, query: Self.parseQuery(queryString), headers: headers, remoteAddress: remote,
            serverPort: port.flatMap(Self.parsePort), receivedAt: receivedAt)
        self.target = target
        repeatedHeaders = repeated
        declaredLength = length.flatMap { Int($0) }.flatMap { $0 >= 0 ? $0 : nil }
    }

    /// `HTTP_IDEMPOTENCY_KEY` -> `idempotency-key`, byte by byte (header names are ASCII tokens).
    static func headerName(cgi name: String) -> String {
        var bytes = Array(name.utf8.dropFirst(5))
        for i in bytes.indices {
            switch bytes[i] {
            case UInt8(ascii: "_"): bytes[i] = UInt8(ascii: "-")
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): bytes[i] += 32
            default: break
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// nginx's `$msec` ("1700000000.123"): accepted only as a finite time between 2001 and 2286, so that no
    /// arithmetic on it can overflow; anything else (`inf`, `nan`, `1e300`, negative) is ignored.
    public static func parseTimestamp(_ text: String) -> Double? {
        guard text.utf8.count <= 32, let value = Double(text) else { return nil }
        return plausibleTime(value)
    }

    private static func plausibleTime(_ seconds: Double) -> Double? {
        seconds.isFinite && seconds >= 1e9 && seconds < 1e10 ? seconds : nil
    }

    /// A port number in decimal digits only (no sign, no leading zero), 1 to 65535.
    public static func parsePort<S: StringProtocol>(_ text: S) -> Int? {
        guard (1...5).contains(text.utf8.count), text.utf8.first != UInt8(ascii: "0"),
            text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), let p = Int(text), p <= 65_535
        else { return nil }
        return p
    }

    /// `X-Request-Start` as Apache (`t=%t`, microseconds), Heroku (milliseconds) and others send it: `t=`
    /// optional, then seconds with a fraction or whole milliseconds or microseconds, told apart by size.
    public static func parseRequestStart(_ text: String) -> Double? {
        var digits = Substring(text)
        if digits.hasPrefix("t=") { digits = digits.dropFirst(2) }
        guard digits.utf8.count <= 32, let value = Double(digits) else { return nil }
        let seconds = value >= 1e15 ? value / 1e6 : value >= 1e12 ? value / 1e3 : value
        return plausibleTime(seconds)
    }

    /// How long the request waited between nginx's arrival and `nowMillis`, never negative; 0 when unknown.
    public func queuedMilliseconds(nowMillis: Int64) -> Int64 {
        guard let receivedAt else { return 0 }
        let (waited, overflow) = nowMillis.subtractingReportingOverflow(Int64(receivedAt * 1000))
        return overflow ? 0 : max(0, waited)
    }

    /// Parses `a=1&b=two%20words` (later duplicates win).
    public static func parseQuery(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]))
            out[name] = parts.count > 1 ? percentDecode(String(parts[1])) : ""
        }
        return out
    }

    static func percentDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let b = iterator.next() {
            if b == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), let h = iterator.next(), let l = iterator.next(),
                let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16)
            {
                bytes.append(v)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a handler answers.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The request (job) this response is about, for the access log; never sent.
    public var requestID: String?

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], requestID: String? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.requestID = requestID
    }

    /// A refusal in the one error shape, `{"error": {"code", "message", "field"?}}`, whoever refuses: the API's
    /// errors and the FastCGI server's own. (The front ends' static bodies cannot call this; FastCGITests holds
    /// them to `isErrorDocument`.)
    public static func error(
        _ status: Int, code: String, message: String, field: String? = nil, headers: [(name: String, value: String)] = []
    ) -> HTTPResponse {
        var detail: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { detail["field"] = .string(field) }
        return json(status, ["error": .object(detail)], headers: headers)
    }

    /// A JSON answer that no cache keeps.
    public static func json(_ status: Int, _ body: JSONValue, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")] + headers,
            body: Array((body.text + "\n").utf8))
    }

    /// Whether `document` has the error shape exactly: an object with only `error`, itself with string `code` and
    /// `message` and, optionally, `field`.
    public static func isErrorDocument(_ document: JSONValue) -> Bool {
        guard let outer = document.objectValue, outer.count == 1, let detail = outer["error"]?.objectValue,
            detail["code"]?.stringValue != nil, detail["message"]?.stringValue != nil
        else { return false }
        return Set(detail.keys).isSubset(of: ["code", "message", "field"]) && (detail["field"].map { $0.stringValue != nil } ?? true)
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 202: "Accepted"
        case 303: "See Other"
        case 403: "Forbidden"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 409: "Conflict"
        case 413: "Payload Too Large"
        case 415: "Unsupported Media Type"
        case 421: "Misdirected Request"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }

    /// The CGI-style header block followed by the body.
    var wireBytes: [UInt8] {
        var head = "Status: \(status) \(Self.reason(status))\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }
}
