import JSON
import Store
import WorkEngine

/// How stored requests look in GET /requests and GET /requests/{id}.
enum RecordJSON {
    static func time(_ ms: UnixMillis?) -> JSONValue {
        ms.map { .string(Timestamp.iso8601(millis: $0)) } ?? .null
    }

    static func summary(_ r: RequestRecord) -> JSONValue {
        [
            "request_id": .string(r.id), "mode": .string(r.mode.rawValue), "op": .string(r.op.rawValue), "status": .string(r.status.rawValue),
            "attempts": .number(Double(r.attempts)), "created_at": time(r.createdAt), "completed_at": time(r.completedAt),
            "duration_ms": r.durationMs.map(JSONValue.milliseconds) ?? .null,
        ]
    }

    static func detail(_ r: RequestRecord) -> JSONValue {
        guard case .object(var o) = summary(r) else { return .null }
        o["input"] = r.input
        o["result"] = r.result ?? .null
        o["error"] = r.error.map { .string($0) } ?? .null
        o["started_at"] = time(r.startedAt)
        if r.op == .handler { o["handler"] = handler(r) }
        if r.mode == .async {
            o["callback_url"] = r.callbackURL.map { .string($0) } ?? .null
            o["delivery"] = [
                "status": .string(deliveryStatus(r)),
                "webhook_id": .string(r.id),
                "delivered_at": time(r.deliveredAt),
                "next_attempt_at": r.status == .delivering ? time(r.nextAttemptAt) : .null,
                "error": r.deliveryError.map { .string($0) } ?? .null,
                "attempts": .array(
                    r.trace.map { a in
                        [
                            "n": .number(Double(a.n)), "at": time(a.at), "duration_ms": .milliseconds(a.durationMs),
                            "http_status": a.httpStatus.map { .number(Double($0)) } ?? .null,
                            "error": a.error.map { .string($0) } ?? .null, "next_attempt_at": time(a.nextAttemptAt),
                        ]
                    }),
            ]
        }
        return .object(o)
    }

    /// A handler job's program: its name, and once it ran, its exit status and stderr's tail (kept when it
    /// failed: a failure's error text is the run's error document).
    static func handler(_ r: RequestRecord) -> JSONValue {
        let document = r.error.flatMap(HandlerRun.errorDocument(stored:))
        let name = document?["handler"] ?? r.input["handler"] ?? .null
        let ran = r.result != nil || document != nil
        return [
            "name": name, "exit_status": document?["exit_status"] ?? (ran ? 0 : .null), "signal": document?["signal"] ?? .null,
            "stderr_tail": document?["stderr_tail"] ?? .null, "error_code": document?["code"] ?? .null,
        ]
    }

    static func deliveryStatus(_ r: RequestRecord) -> String {
        if r.deliveredAt != nil { return "delivered" }
        if r.status == .failed { return "failed" }
        return r.attempts > 0 ? "retrying" : "pending"
    }
}
