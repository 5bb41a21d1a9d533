import Config
import Delivery
import Doorbell
import FastCGI
import Foundation
import Logging
import Store
import Synchronization
import WorkEngine

/// The HTTP API behind nginx: routing, validation, and the handlers for /sync, /async, /requests and
/// /healthz. Both FastCGI pools call `handle`; the pools only decide which threads a request may use.
public final class API: Sendable {
    private let store: any JobStore
    private let engine: WorkEngine
    private let policy: CallbackURLPolicy
    private let doorbell: Doorbell
    private let settings: Settings
    private let startedAt = Date()
    /// The sync semaphore: at most `syncConcurrency` computations at once.
    private let syncSlots: DispatchSemaphore
    private let syncInFlight = Atomic<Int>(0)
    private let metrics = Metrics()
    private let logger: Logger
    /// What /healthz reads from the database, refreshed at most every 100 ms: a probe storm costs the
    /// database ten reads a second, not one per probe.
    private let healthSnapshot = Mutex<(takenAt: UInt64, fields: [String: JSONValue]?)>((0, nil))

    public init(
        store: any JobStore, engine: WorkEngine, policy: CallbackURLPolicy, doorbell: Doorbell, settings: Settings,
        logger: Logger = Logger(label: "workfcgi")
    ) {
        self.logger = logger
        self.store = store
        self.engine = engine
        self.policy = policy
        self.doorbell = doorbell
        self.settings = settings
        syncSlots = DispatchSemaphore(value: settings.syncConcurrency)
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let (route, response) = routed(request)
        metrics.responded(route: route, status: response.status)
        return response
    }

    /// The response, and the route's name for metrics.
    private func routed(_ request: HTTPRequest) -> (String, HTTPResponse) {
        let path = request.path.count > 1 && request.path.hasSuffix("/") ? String(request.path.dropLast()) : request.path
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        switch segments {
        case ["sync"]:
            return ("sync", method(request, "POST") { postWork(request, mode: .sync) })
        case ["async"]:
            return ("async", method(request, "POST") { postWork(request, mode: .async) })
        case ["requests"]:
            return ("requests", method(request, "GET") { listRequests(request) })
        case let s where s.count == 2 && s[0] == "requests":
            return ("request", method(request, "GET") { getRequest(id: s[1]) })
        case let s where s.count == 3 && s[0] == "requests" && s[2] == "redeliver":
            return ("redeliver", method(request, "POST") { redeliver(id: s[1]) })
        case ["healthz"]:
            return ("healthz", method(request, "GET") { health() })
        case ["metrics"]:
            return ("metrics", method(request, "GET") {
                HTTPResponse(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    body: metrics.render(store: store, syncInFlight: syncInFlight.load(ordering: .relaxed)))
            })
        default:
            return ("other", JSONResponse.error(404, code: "not_found", message: "no such endpoint: \(request.path)"))
        }
    }

    private func method(_ request: HTTPRequest, _ allowed: String, _ body: () -> HTTPResponse) -> HTTPResponse {
        let m = request.method == "HEAD" && allowed == "GET" ? "GET" : request.method
        guard m == allowed else {
            return JSONResponse.error(
                405, code: "method_not_allowed", message: "\(request.method) is not allowed here; use \(allowed)",
                headers: [("Allow", allowed == "GET" ? "GET, HEAD" : allowed)])
        }
        return body()
    }

    // MARK: POST /sync and /async

    private func postWork(_ request: HTTPRequest, mode: RequestMode) -> HTTPResponse {
        if request.bodyTooLarge {
            return JSONResponse.error(
                413, code: "body_too_large", message: "request body is larger than \(settings.maxBodyBytes) bytes")
        }
        let contentType = request.headers["content-type"]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces)
            .lowercased()
        guard contentType == "application/json" else {
            return JSONResponse.error(
                415, code: "unsupported_media_type", message: "Content-Type must be application/json", field: "Content-Type")
        }
        let parsed: ParsedRequest
        do {
            parsed = try RequestParser.parse(body: request.body, mode: mode)
        } catch {
            return JSONResponse.validation(error)
        }
        return mode == .sync ? runSync(parsed, request: request) : enqueueAsync(parsed, request: request)
    }

    private func runSync(_ parsed: ParsedRequest, request: HTTPRequest) -> HTTPResponse {
        let created = Clock.nowMillis()
        // The wait is bounded from when nginx got the request: time queued for a FastCGI thread counts too.
        let queuedMs = request.queuedMilliseconds(nowMillis: Int64(created))
        let budgetMs = Int(max(0, Int64(settings.syncWaitMilliseconds) - queuedMs))
        guard syncSlots.wait(timeout: .now() + .milliseconds(budgetMs)) == .success else {
            return JSONResponse.error(
                503, code: "sync_saturated",
                message: "all \(settings.syncConcurrency) sync slots are busy; retry later or use POST /async",
                headers: [("Retry-After", "1")])
        }
        syncInFlight.add(1, ordering: .relaxed)
        let started = Clock.nowMillis()
        let clock = DispatchTime.now().uptimeNanoseconds
        let result = engine.run(parsed.spec)
        let ranNanoseconds = DispatchTime.now().uptimeNanoseconds - clock
        let ms = Double(ranNanoseconds) / 1e6
        syncInFlight.subtract(1, ordering: .relaxed)
        syncSlots.signal()
        metrics.synced(waitNanoseconds: Int64(started - created) * 1_000_000, runNanoseconds: Int64(ranNanoseconds))

        let id = RequestID.make(now: created)
        // Recorded before answering, so GET /requests/{id} finds it at once; but the work is done, so a failed
        // record (say, the size bound reached) does not turn the answer into a 5xx. It is logged and counted.
        do {
            try store.recordSync(
                SyncRecord(
                    id: id, op: parsed.spec.op, input: parsed.input, result: result, createdAt: created, startedAt: started,
                    completedAt: Clock.nowMillis(), durationMs: ms))
        } catch {
            metrics.syncRecordLost(full: error is StoreFull)
            logger.error("sync result answered but not recorded", metadata: ["request_id": "\(id)", "error": "\(error)"])
        }
        return JSONResponse.ok(
            200,
            [
                "request_id": .string(id), "op": .string(parsed.spec.op), "status": "completed", "result": result,
                "duration_ms": .number((ms * 1000).rounded() / 1000),
            ])
    }

    private func enqueueAsync(_ parsed: ParsedRequest, request: HTTPRequest) -> HTTPResponse {
        guard let url = parsed.callbackURL else {
            return JSONResponse.error(422, code: "missing_field", message: "callback_url is required", field: "callback_url")
        }
        do {
            _ = try policy.vet(url)
        } catch {
            return JSONResponse.error(422, code: "invalid_callback_url", message: error.message, field: "callback_url")
        }
        let key = request.headers["idempotency-key"]
        if let key, key.isEmpty || key.utf8.count > 255 || !key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) {
            return JSONResponse.error(
                400, code: "invalid_idempotency_key", message: "Idempotency-Key must be 1 to 255 printable ASCII characters",
                field: "Idempotency-Key")
        }
        let now = Clock.nowMillis()
        // Keys are scoped to the client address, so two clients cannot collide on (or probe) each other's keys.
        let job = NewJob(
            id: RequestID.make(now: now), op: parsed.spec.op, input: parsed.input, callbackURL: url,
            idempotencyKey: key.map { "\(request.remoteAddress) \($0)" }, createdAt: now, client: request.remoteAddress)
        let outcome: EnqueueOutcome
        do {
            outcome = try store.enqueue(job, backlogLimit: settings.backlogLimit, clientLimit: settings.clientBacklogLimit)
        } catch is StoreFull {
            metrics.storeFull()
            logger.error("job refused: the database reached WORKFCGI_MAX_DB_SIZE", metadata: ["request_id": "\(job.id)"])
            return JSONResponse.error(
                503, code: "storage_full", message: "the job store is full; it was not accepted. Retry later",
                headers: [("Retry-After", "30")])
        } catch {
            logger.error("job not stored", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            return JSONResponse.error(
                503, code: "store_unavailable", message: "the job could not be stored; it was not accepted",
                headers: [("Retry-After", "1")])
        }
        switch outcome {
        case .accepted(let id):
            doorbell.ring()
            // This process's own writes show in /healthz at once; deliveryd's within 100 ms.
            healthSnapshot.withLock { $0.fields = nil }
            return accepted(id: id, replayed: false)
        case .duplicate(let id):
            return accepted(id: id, replayed: true)
        case .keyReused:
            return JSONResponse.error(
                422, code: "idempotency_key_reused",
                message: "this Idempotency-Key was used in the last 24 hours for a different request body", field: "Idempotency-Key")
        case .clientBacklogFull(let depth):
            return JSONResponse.error(
                503, code: "client_backlog_full",
                message: "\(depth) of your jobs are not finished yet (limit \(settings.clientBacklogLimit) per client); retry later",
                headers: [("Retry-After", "5")])
        case .backlogFull(let depth):
            return JSONResponse.error(
                503, code: "backlog_full", message: "\(depth) jobs are waiting (limit \(settings.backlogLimit)); retry later",
                headers: [("Retry-After", "5")])
        }
    }

    private func accepted(id: String, replayed: Bool) -> HTTPResponse {
        var headers: [(name: String, value: String)] = [("Location", "/requests/\(id)")]
        if replayed { headers.append(("Idempotent-Replayed", "true")) }
        return JSONResponse.ok(
            202,
            [
                "request_id": .string(id), "status": "pending",
                "message": .string("accepted; the result will be POSTed to callback_url. Track it at /requests/\(id)"),
            ], headers: headers)
    }

    // MARK: GET /requests

    private func listRequests(_ request: HTTPRequest) -> HTTPResponse {
        var query = RequestQuery()
        for key in request.query.keys.sorted() where !["mode", "status", "limit", "before"].contains(key) {
            return JSONResponse.error(400, code: "invalid_query", message: "unknown query parameter '\(key)'", field: key)
        }
        if let mode = request.query["mode"] {
            guard mode == "sync" || mode == "async" else {
                return JSONResponse.error(400, code: "invalid_query", message: "mode must be sync or async", field: "mode")
            }
            query.mode = mode
        }
        if let status = request.query["status"] {
            guard let s = JobStatus(rawValue: status) else {
                let all = JobStatus.allCases.map(\.rawValue).joined(separator: ", ")
                return JSONResponse.error(400, code: "invalid_query", message: "status must be one of \(all)", field: "status")
            }
            query.status = s
        }
        if let limit = request.query["limit"] {
            guard let n = Int(limit), (1...500).contains(n) else {
                return JSONResponse.error(400, code: "invalid_query", message: "limit must be 1 to 500", field: "limit")
            }
            query.limit = n
        }
        if let before = request.query["before"] {
            guard RequestID.isValid(before) else {
                return JSONResponse.error(400, code: "invalid_query", message: "before must be a request_id", field: "before")
            }
            query.before = before
        }
        do {
            let records = try store.requests(query)
            let next: JSONValue = records.count == query.limit ? records.last.map { .string($0.id) } ?? .null : .null
            return JSONResponse.ok(200, ["requests": .array(records.map(RecordJSON.summary)), "next_before": next])
        } catch {
            return storeUnavailable()
        }
    }

    private func getRequest(id: String) -> HTTPResponse {
        guard RequestID.isValid(id) else {
            return JSONResponse.error(404, code: "not_found", message: "no request with id \(id)")
        }
        do {
            guard let record = try store.request(id: id) else {
                return JSONResponse.error(404, code: "not_found", message: "no request with id \(id)")
            }
            return JSONResponse.ok(200, RecordJSON.detail(record))
        } catch {
            return storeUnavailable()
        }
    }

    // MARK: POST /requests/{id}/redeliver (operators; nginx admits loopback only)

    private func redeliver(id: String) -> HTTPResponse {
        guard RequestID.isValid(id) else {
            return JSONResponse.error(404, code: "not_found", message: "no async request with id \(id)")
        }
        do {
            switch try store.redeliver(id: id, now: Clock.nowMillis()) {
            case .requeued:
                doorbell.ring()
                return JSONResponse.ok(
                    202,
                    [
                        "request_id": .string(id), "status": "delivering",
                        "message": "the callback will be sent again with a fresh attempt series and the same webhook-id",
                    ], headers: [("Location", "/requests/\(id)")])
            case .notFound:
                return JSONResponse.error(404, code: "not_found", message: "no async request with id \(id)")
            case .notFinished(let status):
                return JSONResponse.error(
                    409, code: "not_finished", message: "request is \(status.rawValue); only completed or failed requests can be redelivered")
            }
        } catch {
            return storeUnavailable()
        }
    }

    private func storeUnavailable() -> HTTPResponse {
        JSONResponse.error(503, code: "store_unavailable", message: "the database is not available", headers: [("Retry-After", "1")])
    }

    // MARK: GET /healthz

    private func health() -> HTTPResponse {
        let uptime = Date().timeIntervalSince(startedAt)
        var body: [String: JSONValue] = [
            "sync_in_flight": .number(Double(syncInFlight.load(ordering: .relaxed))),
            "sync_concurrency": .number(Double(settings.syncConcurrency)),
            "uptime_seconds": .number((uptime * 10).rounded() / 10),
        ]
        let now = DispatchTime.now().uptimeNanoseconds
        let cached = healthSnapshot.withLock { $0.fields != nil && now - $0.takenAt < 100_000_000 ? $0.fields : nil }
        let fields = cached ?? storeHealth()
        if cached == nil { healthSnapshot.withLock { $0 = (now, fields) } }
        body.merge(fields) { _, new in new }
        guard body["db_connected"] == true else { return JSONResponse.ok(503, .object(body), headers: [("Retry-After", "1")]) }
        return JSONResponse.ok(200, .object(body))
    }

    /// The part of /healthz that comes from the database.
    private func storeHealth() -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        do {
            body["queue_depth"] = .number(Double(try store.backlog()))
            let daemon = try store.daemonStatus()
            let now = Clock.nowMillis()
            let age = daemon.map { now - $0.heartbeatAt }
            let alive = daemon?.isAlive(now: now) ?? false
            body["active_workers"] = .number(Double(alive ? daemon?.activeWorkers ?? 0 : 0))
            body["deliveryd"] = [
                "running": .bool(alive), "heartbeat_age_ms": age.map { .number(Double($0)) } ?? .null,
                "circuits": alive ? daemon?.circuits ?? [] : [],
            ]
            body["db_connected"] = true
            body["status"] = alive ? "ok" : "degraded"
        } catch {
            body["db_connected"] = false
            body["status"] = "unavailable"
            body["queue_depth"] = .null
            body["active_workers"] = .null
        }
        return body
    }
}
