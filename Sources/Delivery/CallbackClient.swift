import CallbackPolicy
import CCurl
import Foundation

/// Builds and judges callback POSTs with libcurl. A `Transfer` is one prepared easy handle;
/// `CallbackDispatcher` runs many at once on libcurl's multi interface. Redirects are never followed, proxies from the environment are ignored, and every connection
/// is pinned to the address the URL policy checked (CURLOPT_CONNECT_TO with an empty host and port, which
/// matches any spelling of any host), so curl never resolves a name itself: DNS cannot change between
/// check and connect, whatever the URL looks like.
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

    /// One prepared POST and everything libcurl reads while it runs; freed with the transfer.
    public final class Transfer: @unchecked Sendable {
        let handle: UnsafeMutableRawPointer
        fileprivate let sink = Sink()
        fileprivate var headers: UnsafeMutablePointer<curl_slist>?
        fileprivate var pin: UnsafeMutablePointer<curl_slist>?

        fileprivate init(handle: UnsafeMutableRawPointer) { self.handle = handle }

        deinit {
            curl_easy_cleanup(handle)
            curl_slist_free_all(headers)
            curl_slist_free_all(pin)
        }
    }

    /// Response collection; curl's C callbacks reach it through an opaque pointer.
    fileprivate final class Sink {
        var body: [UInt8] = []
        var retryAfter: Double?
        var abort = false
        /// The receiver sent more than `limit` bytes of body; reading stopped there.
        var truncated = false
        let limit = 4096
    }

    private static let writeBody: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
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

    private static let readHeader: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
        data, size, count, user in
        guard let user, let data else { return 0 }
        let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
        let n = size * count
        let line = data.withMemoryRebound(to: UInt8.self, capacity: n) {
            String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
        }
        let lower = line.lowercased()
        let abortPrefix = AttemptResult.abortHeader + ":"
        if lower.hasPrefix(abortPrefix) {
            sink.abort = lower.dropFirst(abortPrefix.count).trimmingCharacters(in: .whitespacesAndNewlines) == AttemptResult.abortValue
        } else if lower.hasPrefix("retry-after:") {
            let value = line.dropFirst("retry-after:".count).trimmingCharacters(in: .whitespacesAndNewlines)
            sink.retryAfter = Double(value) ?? CallbackClient.httpDate(value).map { max(0, $0.timeIntervalSinceNow) }
        }
        return n
    }

    /// An easy handle ready to perform, or the attempt's failure when curl refused an option.
    public func prepare(target: CallbackTarget, body: [UInt8], headers: [(String, String)]) -> Result<Transfer, AttemptFailure> {
        guard let address = target.address else { return .failure(AttemptFailure("callback target has no checked address")) }
        guard let handle = curl_easy_init() else { return .failure(AttemptFailure("curl_easy_init failed")) }
        let transfer = Transfer(handle: handle)
        for (name, value) in headers + [("Content-Type", "application/json"), ("Expect", "")] {
            transfer.headers = curl_slist_append(transfer.headers, "\(name): \(value)")
        }
        transfer.pin = curl_slist_append(nil, "::\(address.isIPv4 ? "\(address)" : "[\(address)]"):\(target.port)")
        let sinkPointer = Unmanaged.passUnretained(transfer.sink).toOpaque()

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
        set(workfcgi_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, transfer.headers))
        set(workfcgi_curl_setopt_slist(handle, CURLOPT_CONNECT_TO, transfer.pin))
        set(workfcgi_curl_setopt_write(handle, Self.writeBody))
        set(workfcgi_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer))
        set(workfcgi_curl_setopt_header(handle, Self.readHeader))
        set(workfcgi_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, sinkPointer))
        set(workfcgi_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count))
        // Copied: the transfer may outlive the caller's buffer (multi interface).
        set(body.withUnsafeBufferPointer { workfcgi_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) })
        guard ok else { return .failure(AttemptFailure("curl rejected an option")) }
        return .success(transfer)
    }

    /// What a finished transfer amounts to.
    public static func result(of transfer: Transfer, code: CURLcode) -> AttemptResult {
        guard code == CURLE_OK || (code == CURLE_WRITE_ERROR && transfer.sink.truncated) else {
            return AttemptResult(httpStatus: nil, error: String(cString: curl_easy_strerror(code)))
        }
        var status = 0
        _ = workfcgi_curl_getinfo_long(transfer.handle, CURLINFO_RESPONSE_CODE, &status)
        let error = (200...299).contains(status) ? nil : "HTTP \(status)"
        return AttemptResult(httpStatus: status, error: error, retryAfterSeconds: transfer.sink.retryAfter, abort: transfer.sink.abort)
    }

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}

/// Why an attempt could not even start.
public struct AttemptFailure: Error, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
}
