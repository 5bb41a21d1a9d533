import FastCGI
import Foundation
import JSON
import Store

/// POST /requests/redeliver's query: `since` (required) and `until` (default now) as ISO 8601 times or unix
/// milliseconds, `host`, `limit` (1 to 1000, default 100). Pure: the API's tests drive it without a store.
enum BulkRedeliverQuery {
    static let defaultLimit = 100
    private static let hostBytes = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]".utf8)

    /// The names it reads; any other is refused, so a misspelt `hots=` cannot widen a recovery to every host.
    static let names: Set<String> = ["since", "until", "host", "limit"]

    static func selection(_ query: [String: String], now: UnixMillis) throws(APIError) -> BulkRedeliver {
        if let unknown = query.keys.sorted().first(where: { !names.contains($0) }) {
            throw .invalidQuery("unknown parameter '\(unknown.prefix(64))'; this endpoint reads since, until, host and limit", field: unknown)
        }
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
        return BulkRedeliver(window: since..<until, host: try query["host"].map(host), limit: limit)
    }

    /// A host name or address literal, as in a callback URL: nothing that could be more than that (the API's
    /// parameter and /ui's form field alike).
    static func host(_ text: String) throws(APIError) -> String {
        let ok = !text.isEmpty && text.utf8.count <= 255 && text.utf8.allSatisfy(hostBytes.contains)
        guard ok else { throw .invalidQuery("host must be a host name or address, without scheme or port", field: "host") }
        return text
    }

    /// ISO 8601 (with or without fractional seconds) or unix milliseconds.
    /// Times past 9999-12-31 are refused: they cannot be written back in ISO 8601.
    static let latest: UnixMillis = 253_402_300_799_999

    static func time(_ text: String) -> UnixMillis? {
        if let ms = UnixMillis(text) { return (0...latest).contains(ms) ? ms : nil }
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
