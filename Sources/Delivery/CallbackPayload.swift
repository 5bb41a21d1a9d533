import Foundation
import JSON
import Store
import WorkEngine

/// The JSON body POSTed to a job's callback_url.
public enum CallbackPayload {
    public static func body(id: String, op: JobSpec.Op, work: WorkResult, at: Date) -> [UInt8] {
        var object: [String: JSONValue] = [
            "request_id": .string(id),
            "op": .string(op.rawValue),
            "status": .string(work.error == nil ? "completed" : "failed"),
            "duration_ms": .milliseconds(work.durationMs),
            "timestamp": .string(Timestamp.iso8601(at)),
        ]
        if let error = work.error {
            // A handler's failure is stored as its error document (code, message, exit status, stderr's tail).
            object["error"] = HandlerRun.errorDocument(stored: error) ?? ["code": "work_failed", "message": .string(error)]
        } else {
            object["result"] = work.result ?? .null
        }
        return Array(JSONValue.object(object).text.utf8)
    }
}
