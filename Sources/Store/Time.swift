import Foundation
import JSON

/// Milliseconds since the Unix epoch: the unit of every timestamp in the store.
public typealias UnixMillis = Int64

/// Wall-clock time in the store's unit.
public enum Clock {
    public static func nowMillis() -> UnixMillis {
        UnixMillis((Date().timeIntervalSince1970 * 1000).rounded())
    }
}

/// ISO 8601 with milliseconds, UTC: the one timestamp format of the API and callbacks.
public enum Timestamp {
    public static func iso8601(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func iso8601(millis: UnixMillis) -> String {
        iso8601(Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    /// Reads `iso8601(millis:)` back; nil for anything else.
    public static func millis(_ text: String) -> UnixMillis? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            .map { UnixMillis(($0.timeIntervalSince1970 * 1000).rounded()) }
    }
}

extension JSONValue {
    /// A duration in milliseconds as the API and callbacks show it: rounded to the microsecond.
    public static func milliseconds(_ ms: Double) -> JSONValue {
        .number((ms * 1000).rounded() / 1000)
    }
}
