import Config
import CallbackPolicy
import Doorbell
import FastCGI
import Foundation
import Handlers
import JSON
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
    /// The computations holding a slot now, with their op and start (/status, /ui).
    let syncTable: Mutex<SyncInFlight>
    /// /sync requests that found every slot taken on arrival (PHP-FPM's "max children reached").
    let syncSlotsFull = Atomic<Int>(0)
    /// The last hour per minute, as this process saw it: answers by route, refusals by code.
    let answersPerMinute = Mutex(MinuteCounts<String>())
    let refusalsPerMinute = Mutex(MinuteCounts<String>())
    /// The FastCGI servers whose pools /status and /metrics show (set once they are made).
    let pools = Mutex<[FastCGIServer]>([])
    private let fullShares = Mutex(FullShares())
    private let metrics = Metrics()
    private let operatorPage = OperatorPage()
    private let operators: OperatorRule
    private let logger: Logger
    /// The handler programs (the same runner as `engine`'s): the folder's listing and this process's
    /// /sync runs, for /metrics and /ui; nil without handlers.
    private let handlerRunner: HandlerRunner?
    /// What /healthz reads from the database, refreshed at most every 100 ms: a probe storm costs the
    /// database ten reads a second, not one per probe.
    private let healthSnapshot = Recent<[String: JSONValue]>(maxAge: 100_000_000)
    /// /healthz's whole answer, reused for the same 100 ms: a probe then costs about what a 404 does (88,000
    /// instructions against 67,000 for a 404 when each built and encoded its JSON; callgrind).
    private let healthAnswer = Recent<HTTPResponse>(maxAge: 100_000_000)
    /// The same for operators, whose answer also names the callback hosts with open circuits.
    private let operatorHealthAnswer = Recent<HTTPResponse>(maxAge: 100_000_000)
    /// GET /openapi.json and GET /docs for this build's version, made again when the installed handlers
    /// (which the document lists) are not those it was made with.
    private let documents: Mutex<Documents>
    private let version: String

    private struct Documents {
        var handlers: [String]
        var json: [UInt8]
        var html: [UInt8]

        init(version: String, handlers: [String]) {
            let document = OpenAPIDocument.value(version: version, handlers: handlers)
            (self.handlers, json, html) = (handlers, Array(document.text.utf8), Array(DocsPage.render(document).utf8))
        }
    }

    public init(
        store: any JobStore, engine: WorkEngine, policy: CallbackURLPolicy, doorbell: Doorbell, settings: Settings,
        operators: OperatorRule, logger: Logger = Logger(label: "workfcgi"), build: (version: String, revision: String) = ("dev", "unknown"),
        handlerRunner: HandlerRunner? = nil
    ) {
        self.handlerRunner = handlerRunner
        self.logger = logger
        self.store = store
        self.engine = engine
        self.policy = policy
        self.doorbell = doorbell
        self.settings = settings
        self.operators = operators
        syncSlots = DispatchSemaphore(value: settings.syncConcurrency)
        syncTable = Mutex(SyncInFlight(capacity: settings.syncConcurrency))
        metrics.build(version: build.version, revision: build.revision)
        version = "\(build.version) (\(build.revision))"
        documents = Mutex(Documents(version: version, handlers: handlerRunner?.registry.names ?? []))
    }

    /// The pools to show in /status, /metrics and /ui.
    public func watch(_ servers: [FastCGIServer]) {
        pools.withLock { $0 = servers }
    }

    /// Counts a FastCGI peer the server refused (workfcgi_fastcgi_refused_peers_total).
    public func peerRefused(_ reason: FastCGIServer.PeerRefusal) {
        metrics.peerRefused(reason)
    }

    /// What a handler tells the slow log about the request (set for /sync and /async).
    struct Note {
        var op: String?
        /// The parsed body, shaped by SlowLog.parameters only when the line is written (off the hot path).
        var input: JSONValue?
    }

    /// Answers a request that came in on `pool`'s socket.
    public func handle(_ request: HTTPRequest, pool: Pool) -> HTTPResponse {
        let started = DispatchTime.now().uptimeNanoseconds
        let route = Route(path: request.path)
        let response: HTTPResponse
        var note = Note()
        let now = WallClock.nowMillis()
        do throws(APIError) {
            response = try routed(request, route, pool: pool, note: &note)
        } catch {
            response = error.response
            if error.isRefusal { refusalsPerMinute.withLock { $0.add(error.code, at: now) } }
        }
        let name = route?.name ?? "other"
        metrics.responded(route: name, status: response.status)
        if response.status < 400 { answersPerMinute.withLock { $0.add(name, at: now) } }
        if let slow = settings.slowLogSeconds {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            if seconds >= slow { logSlow(request, route: name, response: response, note: note, seconds: seconds) }
        }
        if settings.accessLog && logger.logLevel <= .info {
            // No bodies, no query strings, no headers: nothing a client sent that could be secret.
            var metadata: Logger.Metadata = [
                "method": "\(request.method)", "route": "\(name)", "status": "\(response.status)",
                "duration_ms": "\(Double((DispatchTime.now().uptimeNanoseconds - started) / 1000) / 1000)",
                "client": "\(request.remoteAddress)",
            ]
            if let id = response.requestID { metadata["request_id"] = "\(id)" }
            // An idempotent replay answers an earlier job's 202: no new job.
            if response.headers.contains(where: { $0.name == "Idempotent-Replayed" }) { metadata["replayed"] = "true" }
            logger.info("request", metadata: metadata)
        }
        return response
    }

    /// Every check that holds for all routes, in order: the route exists, runs on this pool, is called with its
    /// method and, for an operator route, by an operator; then the handler.
    /// The slow log's line: never the body, only its shape (SlowLog.parameters), bounded and escaped.
    private func logSlow(_ request: HTTPRequest, route: String, response: HTTPResponse, note: Note, seconds: Double) {
        var metadata: Logger.Metadata = [
            "route": "\(route)", "method": "\(request.method)", "status": "\(response.status)",
            "duration_ms": "\(Double(Int(seconds * 1e6)) / 1000)",
            "threshold_ms": "\(Int((settings.slowLogSeconds ?? 0) * 1000))",
            "parameters": "\(SlowLog.parameters(input: note.input, query: request.query))",
        ]
        if let op = note.op { metadata["op"] = "\(op)" }
        if let id = response.requestID { metadata["request_id"] = "\(id)" }
        logger.warning("slow request", metadata: metadata)
    }

    private func routed(_ request: HTTPRequest, _ route: Route?, pool: Pool, note: inout Note) throws(APIError) -> HTTPResponse {
        guard let route else { throw .notFound("no such endpoint: \(request.path)") }
        guard route.pool == pool else { throw .misrouted(path: request.path, pool: route.pool.rawValue) }
        let method = request.method == .head && route.method == .get ? .get : request.method
        guard method == route.method else { throw .methodNotAllowed(method: request.method, allowed: route.method) }
        // deliveryd signs every callback: one that reaches this service (a callback_url aimed at its own front
        // door) must not act with deliveryd's address, whatever name or address the URL used.
        if request.headers["webhook-signature"] != nil {
            throw .forbidden("a callback from this service cannot call the service")
        }
        if route.isOperator, let why = operators.refusal(request, changesState: route.method == .post) {
            throw .forbidden(why)
        }
        switch route {
        case .sync: return try postWork(request, mode: .sync, note: &note)
        case .async: return try postWork(request, mode: .async, note: &note)
        case .status: return JSONResponse.ok(200, nowView().json)
        case .requests: return try listRequests(request)
        case .request(let id): return try getRequest(id: id)
        case .redeliver(let id): return try redeliver(id: id)
        case .redeliverFailed: return try redeliverFailed(request)
        case .healthz: return health(forOperator: operators.isOperator(request))
        case .metrics:
            return HTTPResponse(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.render(store: store, syncInFlight: syncInFlight.load(ordering: .relaxed), handlers: handlerRunner?.metrics, now: nowView()))
        case .ui: return try operatorOverview(request)
        case .uiRequest(let id): return try operatorDetail(id: id, request: request)
        case .uiRedeliver(let id): return try operatorRedeliver(id: id, request: request)
        case .uiRedeliverFailed: return try operatorRedeliverFailed(request)
        case .openapi: return Self.document("application/json", currentDocuments().json)
        case .docs: return Self.document("text/html; charset=utf-8", currentDocuments().html)
        }
    }

    private func currentDocuments() -> Documents {
        let names = handlerRunner?.registry.names ?? []
        return documents.withLock {
            if $0.handlers != names { $0 = Documents(version: version, handlers: names) }
            return $0
        }
    }

    private static func document(_ type: String, _ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(
            status: 200,
            headers: [("Content-Type", type), ("Cache-Control", "max-age=300"), ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")],
            body: body)
    }

    // MARK: POST /sync and /async

    private func postWork(_ request: HTTPRequest, mode: RequestMode, note: inout Note) throws(APIError) -> HTTPResponse {
        if request.bodyTooLarge { throw .bodyTooLarge(limit: settings.maxBodyBytes) }
        let contentType = request.headers["content-type"]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces)
            .lowercased()
        guard contentType == "application/json" else { throw .unsupportedMediaType }
        let parsed: ParsedRequest
        do {
            parsed = try RequestParser.parse(body: request.body, mode: mode)
        } catch {
            throw .invalidBody(error)
        }
        note.op = parsed.spec.op.rawValue
        note.input = parsed.input
        if case .handler(let name, _) = parsed.spec, engine.handlers?.isInstalled(name) != true { throw .unknownHandler(name) }
        switch mode {
        case .sync: return try runSync(parsed, request: request)
        // The parser requires callback_url on /async; were it ever missing, the policy refuses "" with a 422.
        case .async: return try enqueueAsync(parsed, callbackURL: parsed.callbackURL ?? "", request: request)
        }
    }

    private func runSync(_ parsed: ParsedRequest, request: HTTPRequest) throws(APIError) -> HTTPResponse {
        let created = WallClock.nowMillis()
        // A client whose share was found used up gets no computation whose record would be refused (the record
        // is checked again, exactly, when it is written).
        let client = request.remoteAddress
        if fullShares.withLock({ $0.suspects(client, now: created) }), let stored = try? store.clientStorage(client) {
            guard stored + Int64(request.body.count + parsed.spec.resultBytesBound) <= settings.clientStorageLimit else {
                fullShares.withLock { $0.refused(client, now: created) }
                metrics.clientStorageFull()
                throw .clientStorageFull(storedBytes: stored, limit: settings.clientStorageLimit)
            }
            fullShares.withLock { $0.admitted(client) }
        }
        // The wait is bounded from when nginx got the request: time queued for a FastCGI thread counts too.
        let queuedMs = request.queuedMilliseconds(nowMillis: Int64(created))
        let budgetMs = Int(max(0, Int64(settings.syncWaitMilliseconds) - queuedMs))
        // Every slot taken on arrival: counted once, whether the wait then gets one or not.
        if syncSlots.wait(timeout: .now()) != .success {
            syncSlotsFull.add(1, ordering: .relaxed)
            metrics.syncSlotsFull()
            guard syncSlots.wait(timeout: .now() + .milliseconds(budgetMs)) == .success else {
                throw .syncSaturated(slots: settings.syncConcurrency)
            }
        }
        syncInFlight.add(1, ordering: .relaxed)
        let started = WallClock.nowMillis()
        let clock = DispatchTime.now().uptimeNanoseconds
        let id = RequestID.make(now: created)
        var handlerName: String?
        if case .handler(let name, _) = parsed.spec { handlerName = name }
        let token = syncTable.withLock {
            $0.start(SyncInFlight.Entry(requestID: id, op: parsed.spec.op.rawValue, handler: handlerName, startedAt: started))
        }
        let outcome = engine.perform(parsed.spec, context: WorkContext(requestID: id, mode: .sync))
        let ranNanoseconds = DispatchTime.now().uptimeNanoseconds - clock
        let ms = Double(ranNanoseconds) / 1e6
        syncTable.withLock { $0.finish(token) }
        syncInFlight.subtract(1, ordering: .relaxed)
        syncSlots.signal()
        metrics.synced(waitNanoseconds: Int64(started - created) * 1_000_000, runNanoseconds: Int64(ranNanoseconds))

        // Recorded before answering, so GET /requests/{id} finds it at once; but the work is done, so a failed
        // record (say, the size bound reached) does not turn the answer into a 5xx. It is logged and counted.
        let result = outcome.result ?? .null
        do {
            try store.recordSync(
                SyncRecord(
                    id: id, op: parsed.spec.op, input: parsed.input, result: result, error: outcome.error, createdAt: created,
                    startedAt: started, completedAt: WallClock.nowMillis(), durationMs: ms, client: client),
                clientStorageLimit: settings.clientStorageLimit)
        } catch {
            if error is ClientStorageFull { fullShares.withLock { $0.refused(client, now: WallClock.nowMillis()) } }
            metrics.syncRecordLost(error is StoreFull ? .storeFull : error is ClientStorageFull ? .clientStorageFull : .storeError)
            logger.error("sync result answered but not recorded", metadata: ["request_id": "\(id)", "error": "\(error)"])
        }
        if let run = outcome.handlerRun, run.errorCode != nil { throw .handlerFailed(run, requestID: id) }
        var body: [String: JSONValue] = [
            "request_id": .string(id), "op": .string(parsed.spec.op.rawValue), "status": "completed", "result": result,
            "duration_ms": .milliseconds(ms),
        ]
        if let run = outcome.handlerRun { body["handler"] = .string(run.handler) }
        var response = JSONResponse.ok(200, .object(body))
        response.tag(requestID: id)
        return response
    }

    private func enqueueAsync(_ parsed: ParsedRequest, callbackURL url: String, request: HTTPRequest) throws(APIError) -> HTTPResponse {
        do {
            _ = try policy.check(url)  // no name lookup here: deliveryd resolves before each attempt
        } catch {
            throw .invalidCallbackURL(error.message)
        }
        let key = request.headers["idempotency-key"]
        if let key, key.isEmpty || key.utf8.count > 255 || !key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) {
            throw .invalidIdempotencyKey
        }
        let now = WallClock.nowMillis()
        // Keys are scoped to the client address, so two clients cannot collide on (or probe) each other's keys.
        let job = NewJob(
            id: RequestID.make(now: now), spec: parsed.spec, input: parsed.input, callbackURL: url,
            idempotencyKey: key.map { "\(request.remoteAddress) \($0)" }, createdAt: now, client: request.remoteAddress)
        let outcome: EnqueueOutcome
        do {
            outcome = try store.enqueue(
                job, backlogLimit: settings.backlogLimit, clientLimit: settings.clientBacklogLimit, clientStorageLimit: settings.clientStorageLimit)
        } catch is StoreFull {
            metrics.storeFull()
            logger.error("job refused: the database reached WORKFCGI_MAX_DB_SIZE", metadata: ["request_id": "\(job.id)"])
            throw .storageFull
        } catch {
            logger.error("job not stored", metadata: ["request_id": "\(job.id)", "error": "\(error)"])
            throw .storeUnavailable("the job could not be stored; it was not accepted")
        }
        switch outcome {
        case .accepted(let id):
            doorbell.ring()
            // This process's own writes show in /healthz at once; deliveryd's within 100 ms.
            healthSnapshot.invalidate()
            healthAnswer.invalidate()
            operatorHealthAnswer.invalidate()
            return accepted(id: id, replayed: false)
        case .duplicate(let id):
            // The earlier job's 202, with where it stands now (it may have finished long ago).
            return accepted(id: id, replayed: true, status: (try? store.request(id: id))?.status ?? .pending)
        case .keyReused:
            throw .idempotencyKeyReused
        case .clientBacklogFull(let depth):
            throw .clientBacklogFull(depth: depth, limit: settings.clientBacklogLimit)
        case .clientStorageFull(let stored):
            fullShares.withLock { $0.refused(request.remoteAddress, now: now) }
            metrics.clientStorageFull()
            throw .clientStorageFull(storedBytes: stored, limit: settings.clientStorageLimit)
        case .backlogFull(let depth):
            throw .backlogFull(depth: depth, limit: settings.backlogLimit)
        }
    }

    private func accepted(id: String, replayed: Bool, status: JobStatus = .pending) -> HTTPResponse {
        var headers: [(name: String, value: String)] = [("Location", "/requests/\(id)")]
        if replayed { headers.append(("Idempotent-Replayed", "true")) }
        var response = JSONResponse.ok(
            202,
            [
                "request_id": .string(id), "status": .string(status.rawValue),
                "message": .string("accepted; the result will be POSTed to callback_url. Track it at /requests/\(id)"),
            ], headers: headers)
        response.tag(requestID: id)
        return response
    }

    // MARK: GET /requests

    private func listRequests(_ request: HTTPRequest) throws(APIError) -> HTTPResponse {
        var query = RequestQuery()
        for key in request.query.keys.sorted() where !["mode", "status", "limit", "before"].contains(key) {
            throw .invalidQuery("unknown query parameter '\(key)'", field: key)
        }
        if let mode = request.query["mode"] {
            guard let m = RequestMode(rawValue: mode) else { throw .invalidQuery("mode must be sync or async", field: "mode") }
            query.mode = m
        }
        if let status = request.query["status"] {
            guard let s = JobStatus(rawValue: status) else {
                let all = JobStatus.allCases.map(\.rawValue).joined(separator: ", ")
                throw .invalidQuery("status must be one of \(all)", field: "status")
            }
            query.status = s
        }
        if let limit = request.query["limit"] {
            guard let n = Int(limit), (1...500).contains(n) else { throw .invalidQuery("limit must be 1 to 500", field: "limit") }
            query.limit = n
        }
        if let before = request.query["before"] {
            guard RequestID.isValid(before) else { throw .invalidQuery("before must be a request_id", field: "before") }
            query.before = before
        }
        let records = try fromStore { try store.requests(query) }
        let next: JSONValue = records.count == query.limit ? records.last.map { .string($0.id) } ?? .null : .null
        return JSONResponse.ok(200, ["requests": .array(records.map(RecordJSON.summary)), "next_before": next])
    }

    private func getRequest(id: String) throws(APIError) -> HTTPResponse {
        guard RequestID.isValid(id), let record = try fromStore({ try store.request(id: id) }) else {
            throw .notFound("no request with id \(id)")
        }
        var response = JSONResponse.ok(200, RecordJSON.detail(record))
        response.tag(requestID: id)
        return response
    }

    // MARK: POST /requests/{id}/redeliver (operators; nginx admits loopback only)

    private func redeliver(id: String) throws(APIError) -> HTTPResponse {
        guard RequestID.isValid(id) else { throw .notFound("no async request with id \(id)") }
        switch try fromStore({ try store.redeliver(id: id, now: WallClock.nowMillis()) }) {
        case .requeued:
            doorbell.ring()
            return JSONResponse.ok(
                202,
                [
                    "request_id": .string(id), "status": "delivering",
                    "message": "the callback will be sent again with a fresh attempt series and the same webhook-id",
                ], headers: [("Location", "/requests/\(id)")])
        case .notFound:
            throw .notFound("no async request with id \(id)")
        case .notFinished(let status):
            throw .notFinished(status)
        }
    }

    // MARK: POST /requests/redeliver (operators): every failed job in a window, a bounded bite per call

    private func redeliverFailed(_ request: HTTPRequest) throws(APIError) -> HTTPResponse {
        let selection = try BulkRedeliverQuery.selection(request.query, now: WallClock.nowMillis())
        let result = try bulkRedeliver(selection)
        return JSONResponse.ok(200, BulkRedeliverQuery.json(result, selection))
    }

    private func bulkRedeliver(_ selection: BulkRedeliver) throws(APIError) -> BulkRedeliverResult {
        let result = try fromStore { try store.redeliverFailed(selection, now: WallClock.nowMillis()) }
        if !result.requeued.isEmpty { doorbell.ring() }
        return result
    }

    // MARK: /ui (operators; nginx admits operators.conf's addresses only)

    private func operatorOverview(_ request: HTTPRequest) throws(APIError) -> HTTPResponse {
        // Unknown filter values read as "any": this is a page, not the API.
        let mode = request.query["mode"].flatMap(RequestMode.init(rawValue:))
        let status = request.query["status"].flatMap(JobStatus.init(rawValue:))
        // The search box: an id goes straight to its page (one that names no request gets the page's 404).
        if let id = request.query["id"]?.trimmingCharacters(in: .whitespaces), !id.isEmpty {
            guard RequestID.isValid(id) else { throw .invalidQuery("id must be a request_id", field: "id") }
            return HTTPResponse(status: 303, headers: [("Location", "/ui/requests/\(id)"), ("Cache-Control", "no-store")])
        }
        let before = request.query["before"].flatMap { RequestID.isValid($0) ? $0 : nil }
        let records = try fromStore { try store.requests(RequestQuery(mode: mode, status: status, before: before, limit: OperatorPage.pageSize)) }
        return operatorPage.overview(
            health: healthFields(), records: records, mode: mode, status: status,
            recovered: request.query["redelivered"].flatMap(Int.init).map { ($0, request.query["more"] == "1") }, handlers: handlersView(),
            now: nowView(), history: historyView())
    }

    /// The handlers panel's facts; nil without a handlers folder.
    private func handlersView() -> OperatorPage.HandlersView? {
        guard let runner = handlerRunner else { return nil }
        let listing = runner.registry.listing
        let async = deliverydNodes()?.handlers ?? HandlerTally()
        return OperatorPage.HandlersView(
            folder: runner.registry.folder, listing: listing.scan, refusedFolder: listing.refusedFolder, tally: runner.tally.merged(with: async))
    }

    private func operatorDetail(id: String, request: HTTPRequest) throws(APIError) -> HTTPResponse {
        guard RequestID.isValid(id), let record = try fromStore({ try store.request(id: id) }) else {
            throw .notFound("no request with id \(id)")
        }
        let notice = request.query["redelivered"] == "1" ? "Redelivery queued: the callback will be sent again." : nil
        return operatorPage.detail(record, notice: notice)
    }

    /// The redeliver button: the operator rule has checked the address, Host and Origin; the form's token must
    /// be this process's for this request.
    private func operatorRedeliver(id: String, request: HTTPRequest) throws(APIError) -> HTTPResponse {
        let form = String(decoding: request.body, as: UTF8.self).split(separator: "&").map { $0.split(separator: "=", maxSplits: 1) }
        let token = form.first { $0.first == "token" }.flatMap { $0.count == 2 ? String($0[1]) : nil }
        guard RequestID.isValid(id), operatorPage.accepts(token: token, for: id) else {
            throw .forbidden("the form's token is missing or not this page's; reload the request's page")
        }
        _ = try redeliver(id: id)
        return HTTPResponse(status: 303, headers: [("Location", "/ui/requests/\(id)?redelivered=1"), ("Cache-Control", "no-store")])
    }

    /// The overview's "redeliver failed" form: the last `window` seconds, optionally one host's.
    private func operatorRedeliverFailed(_ request: HTTPRequest) throws(APIError) -> HTTPResponse {
        let form = HTTPRequest.parseQuery(String(decoding: request.body, as: UTF8.self))
        guard operatorPage.accepts(token: form["token"], for: OperatorPage.bulkTokenSubject) else {
            throw .forbidden("the form's token is missing or not this page's; reload /ui")
        }
        guard let seconds = form["window"].flatMap(Int64.init), OperatorPage.recoveryWindows.contains(where: { $0.seconds == seconds }) else {
            throw .invalidQuery("window must be one of the form's choices", field: "window")
        }
        let now = WallClock.nowMillis()
        let host = try form["host"].flatMap { $0.isEmpty ? nil : $0 }.map(BulkRedeliverQuery.host)
        let result = try bulkRedeliver(BulkRedeliver(window: (now - seconds * 1000)..<(now + 1), host: host, limit: BulkRedeliver.maxLimit))
        let location = "/ui?redelivered=\(result.requeued.count)\(result.more ? "&more=1" : "")"
        return HTTPResponse(status: 303, headers: [("Location", location), ("Cache-Control", "no-store")])
    }

    // MARK: what is happening now, and the last hour

    /// Bounded reads only: the jobs in hand up to `NowView.inHandLimit`, one index step for the oldest pending job,
    /// the counters for backlog and storage.
    func nowView() -> NowView {
        let now = WallClock.nowMillis()
        let nodes = deliverydNodes(now: now)
        var storageState: String?
        let storage = try? store.storageUsage()
        if let storage { storageState = storage.state(nearlyAt: settings.syncPruneAt ?? 0.9, now: now).rawValue }
        return NowView(
            at: now, sync: syncTable.withLock { $0.running }, syncInFlight: syncInFlight.load(ordering: .relaxed),
            syncSlots: settings.syncConcurrency, syncSlotsFull: syncSlotsFull.load(ordering: .relaxed),
            pools: pools.withLock { $0 }.map { $0.status() },
            inHand: try? store.jobsInHand(now: now, limit: NowView.inHandLimit), nodes: nodes,
            deliverydRunning: nodes?.anyAlive, backlog: try? store.backlog(), backlogLimit: settings.backlogLimit,
            oldestPendingAt: (try? store.oldestPendingCreatedAt()) ?? nil, storage: storage, storageState: storageState)
    }

    /// deliveryd's nodes as the database has them; nil: it did not answer.
    func deliverydNodes(now: Int64 = WallClock.nowMillis()) -> DeliverydNodes? {
        (try? store.nodes()).map { DeliverydNodes($0, now: now, timeoutMillis: Int64(settings.nodeTimeoutSeconds * 1000)) }
    }

    func historyView() -> HistoryView {
        let now = WallClock.nowMillis()
        let answers = answersPerMinute.withLock { $0.series(now: now) }
        return HistoryView(
            now: now, answers: answers, refusals: refusalsPerMinute.withLock { $0.series(now: now) },
            failures: try? store.failedAttemptsPerMinute(since: answers.first?.start ?? now))
    }

    /// A read or write whose failure the client can only wait out.
    private func fromStore<T>(_ body: () throws -> T) throws(APIError) -> T {
        do {
            return try body()
        } catch {
            throw .storeUnavailable("the database is not available")
        }
    }

    // MARK: GET /healthz

    /// Other clients' failing callback hosts are not the public's business: they get a count.
    private func health(forOperator: Bool) -> HTTPResponse {
        (forOperator ? operatorHealthAnswer : healthAnswer).value(now: DispatchTime.now().uptimeNanoseconds) {
            var body = healthFields()
            if case .object(var daemon)? = body["deliveryd"] {
                // Unknown (null) while deliveryd is not running: not zero.
                if case .array(let circuits)? = daemon["circuits"] { daemon["open_circuits"] = .number(Double(circuits.count)) } else {
                    daemon["open_circuits"] = .null
                }
                // Node names and ids are the operators' business too; the public sees how many are alive.
                if !forOperator { (daemon["circuits"], daemon["nodes"]) = (nil, nil) }
                body["deliveryd"] = .object(daemon)
            }
            return body["db_connected"] == true
                ? JSONResponse.ok(200, .object(body)) : JSONResponse.ok(503, .object(body), headers: [("Retry-After", "1")])
        }
    }

    /// What /healthz (and the operator page) show.
    private func healthFields() -> [String: JSONValue] {
        let uptime = Date().timeIntervalSince(startedAt)
        var body: [String: JSONValue] = [
            "sync_in_flight": .number(Double(syncInFlight.load(ordering: .relaxed))),
            "sync_concurrency": .number(Double(settings.syncConcurrency)),
            "uptime_seconds": .number((uptime * 10).rounded() / 10),
        ]
        let fields = healthSnapshot.value(now: DispatchTime.now().uptimeNanoseconds) { storeHealth() }
        body.merge(fields) { _, new in new }
        return body
    }

    /// The part of /healthz that comes from the database.
    private func storeHealth() -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        do {
            body["queue_depth"] = .number(Double(try store.backlog()))
            let now = WallClock.nowMillis()
            let nodes = DeliverydNodes(try store.nodes(), now: now, timeoutMillis: Int64(settings.nodeTimeoutSeconds * 1000))
            // Delivering while any node is alive; the freshest heartbeat's age, unknown (null) once every node
            // stopped cleanly.
            let alive = nodes.anyAlive
            body["active_workers"] = .number(Double(nodes.activeWorkers))
            // What the nodes last reported of their circuits is stale once none is running: unknown.
            body["deliveryd"] = [
                "running": .bool(alive), "heartbeat_age_ms": nodes.heartbeatAgeMs.map { .number(Double($0)) } ?? .null,
                "circuits": alive ? .array(nodes.circuits.map(\.json)) : .null, "nodes_alive": .number(Double(nodes.count(.alive))),
                "nodes": nodes.json,
            ]
            // Used plus reserved against the bound: full means new jobs are refused (deliveryd still has room).
            let storage = try store.storageUsage()
            let state = storage.state(nearlyAt: settings.syncPruneAt ?? 0.9, now: now)
            body["storage"] = [
                "state": .string(state.rawValue), "used_bytes": .number(Double(storage.usedBytes)),
                "reserved_bytes": .number(Double(storage.reservedBytes)), "bound_bytes": storage.boundBytes.map { .number(Double($0)) } ?? .null,
            ]
            body["db_connected"] = true
            body["status"] = alive && state != .full ? "ok" : "degraded"
        } catch {
            body["db_connected"] = false
            body["status"] = "unavailable"
            body["queue_depth"] = .null
            body["active_workers"] = .null
        }
        return body
    }
}
