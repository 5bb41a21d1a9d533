import Foundation
import Store
import WorkEngine

/// The JSON body POSTed to a job's callback_url.
public enum CallbackPayload {
    public static func body(id: String, op: String, result: JSONValue?, error: String?, durationMs: Double?, at: Date) -> [UInt8] {
        var object: [String: JSONValue] = [
            "request_id": .string(id),
            "op": .string(op),
            "status": .string(error == nil ? "completed" : "failed"),
            "duration_ms": durationMs.map { .number(($0 * 1000).rounded() / 1000) } ?? .null,
            "timestamp": .string(Timestamp.iso8601(at)),
        ]
        if let error {
            object["error"] = ["code": "work_failed", "message": .string(error)]
        } else {
            object["result"] = result ?? .null
        }
        return Array(JSONValue.object(object).text.utf8)
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
}
