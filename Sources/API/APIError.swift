import FastCGI
import Store
import WorkEngine

/// Every refusal the API answers with, and the one place its HTTP status, code and headers are decided.
/// Handlers throw these; `API.handle` renders them as `{"error": {"code", "message", "field"?}}`.
enum APIError: Error, Equatable {
    case notFound(String)
    /// The front end sent a route to the other FastCGI socket (its configuration is wrong).
    case misrouted(path: String, pool: String)
    case forbidden(String)
    case methodNotAllowed(method: HTTPMethod, allowed: HTTPMethod)
    case bodyTooLarge(limit: Int)
    case unsupportedMediaType
    /// The body is not JSON (400), or JSON with the wrong content (422).
    case invalidBody(ValidationError)
    case invalidCallbackURL(String)
    case invalidIdempotencyKey
    case idempotencyKeyReused
    case invalidQuery(String, field: String)
    case notFinished(JobStatus)
    case syncSaturated(slots: Int)
    case clientBacklogFull(depth: Int, limit: Int)
    /// The client's stored requests use its WORKFCGI_CLIENT_STORAGE_LIMIT.
    case clientStorageFull(storedBytes: Int64, limit: Int64)
    case backlogFull(depth: Int, limit: Int)
    case storageFull
    case storeUnavailable(String)
    /// No handler of that name is installed (WORKFCGI_HANDLERS_DIR).
    case unknownHandler(String)
    /// A /sync handler run failed (502) or was killed at its timeout (504); the request was recorded as failed.
    case handlerFailed(HandlerRun, requestID: String)

    /// A refusal for want of room or time (413, 429, 503): what /ui's refusals graph counts, by code.
    var isRefusal: Bool { [413, 429, 503].contains(status) }

    var status: Int {
        switch self {
        case .notFound: 404
        case .misrouted: 421
        case .forbidden: 403
        case .methodNotAllowed: 405
        case .bodyTooLarge: 413
        case .unsupportedMediaType: 415
        case .invalidBody(let e): e.code == .badJSON ? 400 : 422
        case .invalidCallbackURL, .idempotencyKeyReused: 422
        case .invalidIdempotencyKey, .invalidQuery: 400
        case .notFinished: 409
        case .syncSaturated, .clientBacklogFull, .clientStorageFull, .backlogFull, .storageFull, .storeUnavailable: 503
        case .unknownHandler: 404
        case .handlerFailed(let run, _): run.errorCode == "handler_timeout" ? 504 : 502
        }
    }

    var code: String {
        switch self {
        case .notFound: "not_found"
        case .misrouted: "misrouted"
        case .forbidden: "forbidden"
        case .methodNotAllowed: "method_not_allowed"
        case .bodyTooLarge: "body_too_large"
        case .unsupportedMediaType: "unsupported_media_type"
        case .invalidBody(let e): e.code.rawValue
        case .invalidCallbackURL: "invalid_callback_url"
        case .invalidIdempotencyKey: "invalid_idempotency_key"
        case .idempotencyKeyReused: "idempotency_key_reused"
        case .invalidQuery: "invalid_query"
        case .notFinished: "not_finished"
        case .syncSaturated: "sync_saturated"
        case .clientBacklogFull: "client_backlog_full"
        case .clientStorageFull: "client_storage_full"
        case .backlogFull: "backlog_full"
        case .storageFull: "storage_full"
        case .storeUnavailable: "store_unavailable"
        case .unknownHandler: "unknown_handler"
        case .handlerFailed(let run, _): run.errorCode ?? "handler_failed"
        }
    }

    var message: String {
        switch self {
        case .notFound(let what), .forbidden(let what): what
        case .misrouted(let path, let pool):
            "\(path) is served on the \(pool) socket only; the front end's configuration sends it to the wrong one"
        case .methodNotAllowed(let method, let allowed): "\(method) is not allowed here; use \(allowed)"
        case .bodyTooLarge(let limit): "request body is larger than \(limit) bytes"
        case .unsupportedMediaType: "Content-Type must be application/json"
        case .invalidBody(let e): e.message
        case .invalidCallbackURL(let why): why
        case .invalidIdempotencyKey: "Idempotency-Key must be 1 to 255 printable ASCII characters"
        case .idempotencyKeyReused: "this Idempotency-Key was used in the last 24 hours for a different request body"
        case .invalidQuery(let why, _): why
        case .notFinished(let status):
            "request is \(status.rawValue); only completed or failed requests can be redelivered"
        case .syncSaturated(let slots): "all \(slots) sync slots are busy; retry later or use POST /async"
        case .clientBacklogFull(let depth, let limit):
            "\(depth) of your jobs are not finished yet (limit \(limit) per client); retry later"
        case .clientStorageFull(let stored, let limit):
            "your stored requests use \(stored) bytes (limit \(limit) per client); nothing was stored. Retry once older ones are deleted"
        case .backlogFull(let depth, let limit): "\(depth) jobs are waiting (limit \(limit)); retry later"
        case .storageFull: "the job store is full; it was not accepted. Retry later"
        case .storeUnavailable(let what): what
        case .unknownHandler(let name): "no handler \(name) is installed"
        case .handlerFailed(let run, _): run.errorMessage ?? ""
        }
    }

    var field: String? {
        switch self {
        case .invalidBody(let e): e.field
        case .unsupportedMediaType: "Content-Type"
        case .invalidCallbackURL: "callback_url"
        case .invalidIdempotencyKey, .idempotencyKeyReused: "Idempotency-Key"
        case .invalidQuery(_, let field): field
        case .unknownHandler: "handler"
        default: nil
        }
    }

    /// Retry-After on every 503 (how soon a retry may do better), Allow on 405.
    var headers: [(name: String, value: String)] {
        switch self {
        case .methodNotAllowed(_, let allowed): [("Allow", allowed == .get ? "GET, HEAD" : allowed.rawValue)]
        case .syncSaturated, .storeUnavailable: [("Retry-After", "1")]
        case .clientBacklogFull, .backlogFull: [("Retry-After", "5")]
        case .storageFull: [("Retry-After", "30")]
        // A share frees as deliveryd finishes its jobs and as records age out: not within seconds.
        case .clientStorageFull: [("Retry-After", "60")]
        default: []
        }
    }

    var response: HTTPResponse {
        // A handler's failure carries its exit status and stderr's tail, and the id it was recorded under.
        if case .handlerFailed(let run, let id) = self, let document = run.errorDocument {
            var response = JSONResponse.ok(status, ["error": document, "request_id": .string(id)])
            response.tag(requestID: id)
            return response
        }
        return JSONResponse.error(status, code: code, message: message, field: field, headers: headers)
    }
}
