import FastCGI
import JSON

/// JSON responses; errors in the one shape `HTTPResponse.error` writes.
enum JSONResponse {
    static func ok(_ status: Int, _ body: JSONValue, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        HTTPResponse.json(status, body, headers: headers)
    }

    /// Only `APIError.response` calls this: every refusal is one of its cases.
    static func error(
        _ status: Int, code: String, message: String, field: String? = nil, headers: [(name: String, value: String)] = []
    ) -> HTTPResponse {
        HTTPResponse.error(status, code: code, message: message, field: field, headers: headers)
    }
}
