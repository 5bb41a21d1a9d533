import FastCGI
import Foundation
import JSON
import Store

/// POST /requests/redeliver's query: `since` (required) and `until` (default now) as ISO 8601 times or unix
/// milliseconds, `host`, `limit` (1 to 1000, default 100). Pure: the API's tests drive it without a store.
enum BulkRedeliverQuery {
    static let defaultLimit = 100
    private static let hostBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]".utf8)

    static func selection(_ query: [String: String], now: UnixMillis) throws(APIError) -> BulkRedeliver {
        guard let sinceText = query["since"] else { throw .invalidQuery("since is required (ISO 8601 or unix ms)", field: "since") }
        guard let since = time(sinceText) else { throw .invalidQuery("since must be an ISO 8601 time or unix milliseconds", field: "since") }
        var until = now + 1
        if let text = query["until"] {
            guard let t = time(text) else { throw .invalidQuery("until must be an ISO 8601 time or unix milliseconds", field: "until") }
            until = t
        }
        guard since < until else { throw .invalidQuery("since must be before until", field: "since") }
        var limit = defaultLimit
        if let text = query["limit"] {
            guard let n = Int(text), (1...BulkRedeliver.maxLimit).contains(n) else {
                throw .invalidQuery("limit must be 1 to \(BulkRedeliver.maxLimit)", field: "limit")
            }
            limit = n
        }
        var host: String?
        if let text = query["host"] {
            // A host name or address literal, as in a callback URL: nothing that could be more than that.
            let ok = !text.isEmpty && text.utf8.count <= 255 && text.utf8.allSatisfy(hostBytes.contains)
            guard ok else { throw .invalidQuery("host must be a host name or address, without scheme or port", field: "host") }
            host = text
        }
        return BulkRedeliver(window: since..<until, host: host, limit: limit)
    }

    /// ISO 8601 (with or without fractional seconds) or unix milliseconds.
    static func time(_ text: String) -> UnixMillis? {
        if let ms = UnixMillis(text), ms >= 0 { return ms }
        return Timestamp.millis(text) ?? wholeSeconds(text)
    }

    /// ISO 8601 to the second (`2026-12-02T05:00:00Z`), as an operator types it.
    static func wholeSeconds(_ text: String) -> UnixMillis? {
        (try? Date.ISO8601FormatStyle().parse(text)).map { UnixMillis(($0.timeIntervalSince1970 * 1000).rounded()) }
    }

    static func json(_ result: BulkRedeliverResult, _ selection: BulkRedeliver) -> JSONValue {
        [
            "requeued": .number(Double(result.requeued.count)), "request_ids": .array(result.requeued.map { .string($0) }),
            "more": .bool(result.more), "since": .string(Timestamp.iso8601(millis: selection.window.lowerBound)),
            "until": .string(Timestamp.iso8601(millis: selection.window.upperBound)),
            "host": selection.host.map { .string($0) } ?? .null,
        ]
    }
}
