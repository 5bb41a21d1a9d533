import FastCGI
import JSON

/// JSON responses, and the one error shape: `{"error": {"code", "message", "field"?}}`.
enum JSONResponse {
    static func ok(_ status: Int, _ body: JSONValue, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status,
            headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")] + headers,
            body: Array((body.text + "\n").utf8))
    }

    /// Only `APIError.response` calls this: every refusal is one of its cases.
    static func error(
        _ status: Int, code: String, message: String, field: String? = nil, headers: [(name: String, value: String)] = []
    ) -> HTTPResponse {
        var detail: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { detail["field"] = .string(field) }
        return ok(status, ["error": .object(detail)], headers: headers)
    }
}
