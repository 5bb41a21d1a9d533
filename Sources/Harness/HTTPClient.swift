import CCurl
import Foundation

/// A blocking HTTP/1.1 client on one libcurl easy handle, which keeps its connection alive between
/// requests. One per thread; used by loadgen and the integration tests to talk to nginx like any client.
public final class HTTPClient: @unchecked Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        /// The body parsed as a JSON object, or nil.
        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        }
    }

    private final class Sink {
        var body: [UInt8] = []
        var headers: [String: String] = [:]
    }

    private let handle: UnsafeMutableRawPointer
    public let timeoutSeconds: Double
    /// Local address to send from (e.g. "127.0.0.2"), so tests can appear as another client IP.
    public let sourceAddress: String?

    public init(timeoutSeconds: Double = 30, sourceAddress: String? = nil) {
        curl_global_init(Int(CURL_GLOBAL_ALL))
        handle = curl_easy_init()
        self.timeoutSeconds = timeoutSeconds
        self.sourceAddress = sourceAddress
    }

    deinit { curl_easy_cleanup(handle) }

    /// Sends one request; a transport failure (refused, timed out) is thrown with curl's message.
    public func request(
        _ method: String, _ url: String, body: [UInt8]? = nil, headers: [String: String] = [:]
    ) throws -> Response {
        curl_easy_reset(handle)
        let sink = Sink()
        let pointer = Unmanaged.passUnretained(sink).toOpaque()
        let onBody: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, user in
            guard let data, let user else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            data.withMemoryRebound(to: UInt8.self, capacity: size * count) {
                sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: size * count))
            }
            return size * count
        }
        let onHeader: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, user in
            guard let data, let user else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            let line = data.withMemoryRebound(to: UInt8.self, capacity: size * count) {
                String(decoding: UnsafeBufferPointer(start: $0, count: size * count), as: UTF8.self)
            }
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                sink.headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return size * count
        }
        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers { list = curl_slist_append(list, "\(name): \(value)") }
        list = curl_slist_append(list, "Expect:")
        defer { curl_slist_free_all(list) }

        _ = workfcgi_curl_setopt_string(handle, CURLOPT_URL, url)
        _ = workfcgi_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
        _ = workfcgi_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = workfcgi_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(timeoutSeconds * 1000))
        _ = workfcgi_curl_setopt_string(handle, CURLOPT_NOPROXY, "*")
        if let sourceAddress { _ = workfcgi_curl_setopt_string(handle, CURLOPT_INTERFACE, sourceAddress) }
        _ = workfcgi_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list)
        _ = workfcgi_curl_setopt_write(handle, onBody)
        _ = workfcgi_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, pointer)
        _ = workfcgi_curl_setopt_header(handle, onHeader)
        _ = workfcgi_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, pointer)
        if method == "HEAD" { _ = workfcgi_curl_setopt_long(handle, CURLOPT_NOBODY, 1) }

        if let body {
            // COPYPOSTFIELDS copies, so the buffer need not outlive this call; a zero byte stands in for
            // an empty body because curl wants a valid pointer.
            let bytes = body.isEmpty ? [UInt8(0)] : body
            _ = workfcgi_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
            bytes.withUnsafeBufferPointer { buffer in
                _ = workfcgi_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            }
        }
        let code = curl_easy_perform(handle)
        withExtendedLifetime(sink) {}
        guard code == CURLE_OK else {
            throw TransportError(message: String(cString: curl_easy_strerror(code)))
        }
        var status = 0
        _ = workfcgi_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return Response(status: status, headers: sink.headers, body: sink.body)
    }

    /// POST with a JSON body (`Content-Type: application/json`).
    public func postJSON(_ url: String, _ body: String, headers: [String: String] = [:]) throws -> Response {
        try request("POST", url, body: Array(body.utf8), headers: ["Content-Type": "application/json"].merging(headers) { $1 })
    }

    public func get(_ url: String) throws -> Response {
        try request("GET", url)
    }

    public struct TransportError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}
