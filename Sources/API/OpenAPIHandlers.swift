import WorkEngine
import JSON

/// The handlers' part of the OpenAPI document: the `{"handler", "input"}` body on /sync and /async (a variant of
/// `requestVariant`), and /sync's 502 and 504.
extension OpenAPIDocument {
    /// /sync's answers when a handler fails or runs out of time; `value(version:)` adds them.
    static func addHandlerResponses(_ document: inout JSONValue) {
        edit(&document, ["paths", "/sync", "post", "responses"]) {
            guard case .object(var responses) = $0 else { return }
            responses["502"] = handlerFailure("a handler failed: a non-zero exit status, a signal, stdout not one JSON value or over 2 MiB")
            responses["504"] = handlerFailure("a handler was still running at its timeout (WORKFCGI_HANDLER_TIMEOUT) and was killed")
            $0 = .object(responses)
        }
    }

    static func handlerRequest(callback: Bool) -> JSONValue {
        var properties: [String: JSONValue] = [
            "op": ["const": "handler", "description": "optional"],
            "handler": [
                "type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$", "minLength": 1, "maxLength": .number(Double(HandlerName.bytes.upperBound)),
                "description": "an executable in WORKFCGI_HANDLERS_DIR (404 unknown_handler when none has this name)",
            ],
            "input": ["description": "any JSON value: the handler's stdin"],
        ]
        var required: [JSONValue] = ["handler", "input"]
        if callback {
            properties["callback_url"] = reference("CallbackURL")
            required.append("callback_url")
        }
        return [
            "type": "object", "additionalProperties": false, "properties": .object(properties), "required": .array(required),
            "description": "A handler program: input on stdin, its stdout (one JSON value, at most 2 MiB) is the result.",
        ]
    }

    static func handlerFailure(_ description: String) -> JSONValue {
        [
            "description": .string(description),
            "content": [
                "application/json": [
                    "schema": [
                        "type": "object", "required": ["error", "request_id"],
                        "properties": [
                            "request_id": ["type": "string"],
                            "error": [
                                "type": "object", "required": ["code", "message", "handler", "exit_status", "signal", "stderr_tail"],
                                "properties": [
                                    "code": ["enum": ["handler_failed", "handler_timeout"]], "message": ["type": "string"],
                                    "handler": ["type": "string"], "exit_status": ["type": ["integer", "null"]],
                                    "signal": ["type": ["integer", "null"]], "stderr_tail": ["type": "string", "description": "stderr's last 4 KiB"],
                                ],
                            ],
                        ],
                    ]
                ]
            ],
        ]
    }

    /// Applies `change` to the value at `path` (object keys), when there is one.
    private static func edit(_ value: inout JSONValue, _ path: ArraySlice<String>, _ change: (inout JSONValue) -> Void) {
        guard let key = path.first else { return change(&value) }
        guard case .object(var object) = value, var child = object[key] else { return }
        edit(&child, path.dropFirst(), change)
        object[key] = child
        value = .object(object)
    }

    private static func edit(_ value: inout JSONValue, _ path: [String], _ change: (inout JSONValue) -> Void) {
        edit(&value, path[...], change)
    }
}
