import CCurl
import Foundation

/// POSTs a callback with libcurl. Each call uses its own easy handle, so workers can call it concurrently.
/// Redirects are never followed, proxies from the environment are ignored, and every connection is pinned
/// to the address the URL policy checked (CURLOPT_CONNECT_TO with an empty host and port, which matches
/// any spelling of any host), so curl never resolves a name itself: DNS cannot change between check and
/// connect, whatever the URL looks like.
public struct CallbackClient: Sendable {
    public var timeoutSeconds: Double
    public var userAgent: String

    public init(timeoutSeconds: Double, userAgent: String = "workfcgi-deliveryd/1") {
        self.timeoutSeconds = timeoutSeconds
        self.userAgent = userAgent
    }

    /// libcurl's process-wide setup; call once before any thread uses the client.
    public static func globalInit() {
        curl_global_init(Int(CURL_GLOBAL_ALL))
    }

    /// Response collection; curl's C callbacks reach it through an opaque pointer.
    private final class Sink {
        var body: [UInt8] = []
        var retryAfter: Double?
        /// The receiver sent more than `limit` bytes of body; reading stopped there.
        var truncated = false
        let limit = 4096
    }

    public func post(target: CallbackTarget, body: [UInt8], headers: [(String, String)]) -> AttemptResult {
        guard let handle = curl_easy_init() else { return AttemptResult(httpStatus: nil, error: "curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }

        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers + [("Content-Type", "application/json"), ("Expect", "")] {
            list = curl_slist_append(list, "\(name): \(value)")
        }
        defer { curl_slist_free_all(list) }
        guard let address = target.address else { return AttemptResult(httpStatus: nil, error: "callback target has no checked address") }
        let pin = curl_slist_append(nil, "::\(address.isIPv4 ? "\(address)" : "[\(address)]"):\(target.port)")
        defer { curl_slist_free_all(pin) }

        let sink = Sink()
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        let writeBody: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
            data, size, count, user in
            guard let user, let data else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            let n = size * count
            let room = max(0, sink.limit - sink.body.count)
            data.withMemoryRebound(to: UInt8.self, capacity: n) {
                sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: min(n, room)))
            }
            // Past the kept prefix, stop reading: a receiver streaming an endless body must not hold the
            // attempt until the timeout. The status line has been read by now and decides the attempt.
            guard n <= room else {
                sink.truncated = true
                return 0
            }
            return n
        }
        let readHeader: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
            data, size, count, user in
            guard let user, let data else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            let n = size * count
            let line = data.withMemoryRebound(to: UInt8.self, capacity: n) {
                String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
            }
            if line.lowercased().hasPrefix("retry-after:") {
                let value = line.dropFirst("retry-after:".count).trimmingCharacters(in: .whitespacesAndNewlines)
                sink.retryAfter = Double(value) ?? Self.httpDate(value).map { max(0, $0.timeIntervalSinceNow) }
            }
            return n
        }

        let timeoutMs = Int(timeoutSeconds * 1000)
        let protocols = target.scheme == "https" ? CURLPROTO_HTTPS : CURLPROTO_HTTP
        var ok = true
        func set(_ code: CURLcode) { if code != CURLE_OK { ok = false } }
        set(workfcgi_curl_setopt_string(handle, CURLOPT_URL, target.requestURL))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_PROTOCOLS, Int(protocols)))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        set(workfcgi_curl_setopt_string(handle, CURLOPT_PROXY, ""))
        set(workfcgi_curl_setopt_string(handle, CURLOPT_NOPROXY, "*"))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMs))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, min(timeoutMs, 5000)))
        set(workfcgi_curl_setopt_string(handle, CURLOPT_USERAGENT, userAgent))
        set(workfcgi_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
        set(workfcgi_curl_setopt_slist(handle, CURLOPT_CONNECT_TO, pin))
        set(workfcgi_curl_setopt_write(handle, writeBody))
        set(workfcgi_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer))
        set(workfcgi_curl_setopt_header(handle, readHeader))
        set(workfcgi_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, sinkPointer))
        guard ok else { return AttemptResult(httpStatus: nil, error: "curl rejected an option") }

        let code: CURLcode = body.withUnsafeBufferPointer { buffer in
            var setup = workfcgi_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, buffer.count)
            if setup == CURLE_OK {
                setup = workfcgi_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            }
            guard setup == CURLE_OK else { return setup }
            return curl_easy_perform(handle)
        }
        withExtendedLifetime(sink) {}
        guard code == CURLE_OK || (code == CURLE_WRITE_ERROR && sink.truncated) else {
            return AttemptResult(httpStatus: nil, error: String(cString: curl_easy_strerror(code)))
        }
        var status = 0
        _ = workfcgi_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        let error = (200...299).contains(status) ? nil : "HTTP \(status)"
        return AttemptResult(httpStatus: status, error: error, retryAfterSeconds: sink.retryAfter)
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
