import FastCGI
import Store

/// workfcgi's two FastCGI sockets, each with its own threads: compute (`/sync`) only ever runs on the sync
/// pool's, so it can never take the threads that answer everything else.
public enum Pool: String, Sendable { case sync, api }

/// Every endpoint, each with exactly one spelling: the path must equal it byte for byte (no trailing or doubled
/// slash, no dot segment, no other case), and anything else is 404. The operator rule and the pool a route may
/// run on belong to the route, so no spelling can reach a handler without them.
enum Route: Equatable, Sendable {
    case sync, async
    case requests
    case request(id: String)
    case redeliver(id: String)
    /// Every failed job in a time window, optionally one host's (Svix's "recover since").
    case redeliverFailed
    case healthz, metrics
    /// What is happening now, as JSON for scripts (operators).
    case status
    case ui
    case uiRequest(id: String)
    case uiRedeliver(id: String)
    case uiRedeliverFailed
    case openapi, docs

    /// The route for a decoded path, or nil (404).
    init?(path: String) {
        // "/a/b" -> ["a", "b"]; any empty segment (trailing or doubled slash) or dot segment is no route.
        guard path.utf8.first == UInt8(ascii: "/") else { return nil }
        let segments = path.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        guard segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        // An id is part of the spelling: only a request id's own form names a request.
        let id = { (i: Int) in segments.count > i && RequestID.isValid(segments[i]) }
        switch segments {
        case ["sync"]: self = .sync
        case ["async"]: self = .async
        case ["requests"]: self = .requests
        case ["requests", "redeliver"]: self = .redeliverFailed
        case let s where s.count == 2 && s[0] == "requests" && id(1): self = .request(id: s[1])
        case let s where s.count == 3 && s[0] == "requests" && id(1) && s[2] == "redeliver": self = .redeliver(id: s[1])
        case ["healthz"]: self = .healthz
        case ["metrics"]: self = .metrics
        case ["status"]: self = .status
        case ["ui"]: self = .ui
        case ["ui", "redeliver"]: self = .uiRedeliverFailed
        case let s where s.count == 3 && s[0] == "ui" && s[1] == "requests" && id(2): self = .uiRequest(id: s[2])
        case let s where s.count == 4 && s[0] == "ui" && s[1] == "requests" && id(2) && s[3] == "redeliver": self = .uiRedeliver(id: s[2])
        case ["openapi.json"]: self = .openapi
        case ["docs"]: self = .docs
        default: return nil
        }
    }

    /// The route's one spelling: `Route(path: p)?.path == p` for every path that names a route.
    var path: String {
        switch self {
        case .sync: "/sync"
        case .async: "/async"
        case .requests: "/requests"
        case .request(let id): "/requests/\(id)"
        case .redeliver(let id): "/requests/\(id)/redeliver"
        case .redeliverFailed: "/requests/redeliver"
        case .healthz: "/healthz"
        case .metrics: "/metrics"
        case .status: "/status"
        case .ui: "/ui"
        case .uiRequest(let id): "/ui/requests/\(id)"
        case .uiRedeliver(let id): "/ui/requests/\(id)/redeliver"
        case .uiRedeliverFailed: "/ui/redeliver"
        case .openapi: "/openapi.json"
        case .docs: "/docs"
        }
    }

    /// The one method the route answers (HEAD counts as GET).
    var method: HTTPMethod {
        switch self {
        case .sync, .async, .redeliver, .redeliverFailed, .uiRedeliver, .uiRedeliverFailed: .post
        default: .get
        }
    }

    /// Only operators may call it: it shows every client's jobs or the service's internals, or changes them.
    /// GET /requests/{id} is not one: a client follows its own job by an id only it was given.
    var isOperator: Bool {
        switch self {
        case .requests, .redeliver, .redeliverFailed, .metrics, .status, .ui, .uiRequest, .uiRedeliver, .uiRedeliverFailed: true
        default: false
        }
    }

    var pool: Pool { self == .sync ? .sync : .api }

    /// The label in metrics and the access log.
    var name: String {
        switch self {
        case .sync: "sync"
        case .async: "async"
        case .requests: "requests"
        case .request: "request"
        case .redeliver, .redeliverFailed: "redeliver"
        case .healthz: "healthz"
        case .metrics: "metrics"
        case .status: "status"
        case .ui, .uiRequest, .uiRedeliver, .uiRedeliverFailed: "ui"
        case .openapi: "openapi"
        case .docs: "docs"
        }
    }
}
