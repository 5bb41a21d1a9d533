import FastCGI
import Handlers
import Prometheus
import Synchronization
import Store
import WorkEngine

/// workfcgi's Prometheus metrics (GET /metrics): response counts by route and status, sync timings, and,
/// read from the database when scraped, requests by mode and status and deliveryd's health.
final class Metrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let syncDuration: DurationHistogram
    private let syncWait: DurationHistogram
    // Counters of rare events are made at start, so that they read 0 rather than being absent until the first
    // (a rate() or an alert over an absent series says nothing).
    private let storeFullRefusals: Counter
    private let clientStorageFullRefusals: Counter
    private let syncRecordsLost: [SyncRecordLoss: Counter]
    private let syncSlotsFullCounter: Counter
    private let refusedPeers: [FastCGIServer.PeerRefusal: Counter]

    /// Why a /sync result was answered but not stored: the `reason` label.
    enum SyncRecordLoss: String, CaseIterable {
        case storeFull = "store_full", clientStorageFull = "client_storage_full", storeError = "store_error"
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "workfcgi", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        let buckets: [Duration] = [
            .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .seconds(2.5), .seconds(5), .seconds(10),
        ]
        syncDuration = registry.makeDurationHistogram(
            descriptor: Self.name("sync_duration", "seconds", "Time /sync spent computing, once it had a slot."), buckets: buckets)
        syncWait = registry.makeDurationHistogram(
            descriptor: Self.name("sync_wait", "seconds", "Time /sync waited for a slot of the semaphore."), buckets: buckets)
        storeFullRefusals = registry.makeCounter(descriptor: Self.name("store_full_refusals", "total", "Async jobs refused with 503 storage_full."))
        clientStorageFullRefusals = registry.makeCounter(
            descriptor: Self.name("client_storage_full_refusals", "total", "Requests refused with 503 client_storage_full."))
        var lost: [SyncRecordLoss: Counter] = [:]
        for reason in SyncRecordLoss.allCases {
            lost[reason] = registry.makeCounter(
                descriptor: Self.name("sync_records_lost", "total", "Sync results answered but not recorded, by reason."),
                labels: [("reason", reason.rawValue)])
        }
        syncRecordsLost = lost
        syncSlotsFullCounter = registry.makeCounter(
            descriptor: Self.name("sync_slots_full", "total", "/sync requests that found every slot busy on arrival (max children reached)."))
        var refused: [FastCGIServer.PeerRefusal: Counter] = [:]
        for reason in FastCGIServer.PeerRefusal.allCases {
            refused[reason] = registry.makeCounter(
                descriptor: Self.name(
                    "fastcgi_refused_peers", "total",
                    "FastCGI connections refused: user (a unix socket peer not in WORKFCGI_FRONTEND_USERS, 403), address (a TCP peer outside WORKFCGI_FRONTEND_ADDRESSES, closed unread) or local_user (a TCP peer on this machine whose socket's user is not in WORKFCGI_FRONTEND_USERS or cannot be looked up, closed unread)."),
                labels: [("reason", reason.rawValue)])
        }
        refusedPeers = refused
    }

    func peerRefused(_ reason: FastCGIServer.PeerRefusal) {
        refusedPeers[reason]?.increment()
    }

    /// One counter per (route, status), made once: asking the registry on every response validated the
    /// metric name and hashed the labels each time (seen in the profile of the 404 path).
    private let responses = Mutex<[String: Counter]>([:])

    /// Counts one answered request. `route` is a fixed route name, never the raw path (bounded cardinality).
    func responded(route: String, status: Int) {
        let key = "\(route) \(status)"
        let counter = responses.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: Self.name("http_responses", "total", "Responses by route and HTTP status."),
                labels: [("route", route), ("status", String(status))])
            cache[key] = counter
            return counter
        }
        counter.increment()
    }

    func synced(waitNanoseconds: Int64, runNanoseconds: Int64) {
        syncWait.recordNanoseconds(waitNanoseconds)
        syncDuration.recordNanoseconds(runNanoseconds)
    }

    func syncSlotsFull() {
        syncSlotsFullCounter.increment()
    }

    /// A /sync answer whose record could not be stored (the client got its result; GET /requests will 404).
    func syncRecordLost(_ reason: SyncRecordLoss) {
        syncRecordsLost[reason]?.increment()
    }

    /// Requests refused because their client's stored requests use its WORKFCGI_CLIENT_STORAGE_LIMIT.
    func clientStorageFull() {
        clientStorageFullRefusals.increment()
    }

    /// An /async job refused because the database reached its size bound.
    func storeFull() {
        storeFullRefusals.increment()
    }

    private func gauge(_ metric: String, _ help: String, labels: [(String, String)] = [], _ value: Double) {
        registry.makeGauge(descriptor: Self.name(metric, "", help), labels: labels).set(to: value)
    }

    /// `workfcgi_build_info{version, revision} 1`, the usual way to put the running build on a dashboard.
    func build(version: String, revision: String) {
        gauge("build_info", "The running build: version and git revision.", labels: [("version", version), ("revision", revision)], 1)
    }

    /// The exposition text, after refreshing the gauges that are read rather than counted.
    func render(store: any JobStore, syncInFlight: Int, handlers: HandlerMetrics?, now: NowView) -> [UInt8] {
        gauge("sync_in_flight", "Sync computations running now.", Double(syncInFlight))
        live(now)
        var delivery: DeliverydNodes?
        do {
            for (mode, status, count) in try store.statusCounts() {
                gauge("requests", "Stored requests by mode and status.", labels: [("mode", mode.rawValue), ("status", status.rawValue)], Double(count))
            }
            // The nodes as the now view read them (nil: the database did not answer it).
            guard let nodes = now.nodes else { throw NoAnswer() }
            gauge("deliveryd_up", "1 while any deliveryd node's heartbeat is fresh.", nodes.anyAlive ? 1 : 0)
            gauge("deliveryd_active_workers", "Jobs the alive deliveryd nodes are working on.", Double(nodes.activeWorkers))
            gauge("callback_circuits_open", "Callback hosts whose circuit breaker is open or half-open, summed over alive nodes.", Double(nodes.circuits.count))
            for liveness in NodeStatus.Liveness.allCases {
                gauge("deliveryd_nodes", "deliveryd nodes (the latest start of each name) by state.", labels: [("state", liveness.rawValue)], Double(nodes.count(liveness)))
            }
            delivery = nodes
            let storage = try store.storageUsage()
            gauge("storage_used_bytes", "Database pages in use, in bytes.", Double(storage.usedBytes))
            gauge("storage_reserved_bytes", "Bytes held for the results of accepted async jobs.", Double(storage.reservedBytes))
            gauge("storage_bound_bytes", "The size bound (WORKFCGI_MAX_DB_SIZE) in force; 0: none.", Double(storage.boundBytes ?? 0))
            gauge("database_up", "1 when the database answered this scrape.", 1)
        } catch {
            gauge("database_up", "1 when the database answered this scrape.", 0)
        }
        // This process's /sync runs and the nodes' /async ones (from their last heartbeats), labelled by mode.
        let handlerText = HandlerMetrics.prometheus((handlers?.snapshot ?? HandlerTally()).merged(with: delivery?.handlers ?? HandlerTally()))
        return registry.emitToBuffer() + Array((Self.exposition(delivery?.nodes ?? [], now: now.at) + handlerText).utf8)
    }

    /// What is happening now, by op (five values: bounded labels, never a request id). Every op is set, to 0 when
    /// idle, so a series does not keep the value of a computation that has ended.
    private func live(_ now: NowView) {
        for op in JobSpec.Op.allCases {
            let sync = now.sync.filter { $0.op == op.rawValue }
            gauge("sync_running", "Sync computations running now, by op.", labels: [("op", op.rawValue)], Double(sync.count))
            gauge(
                "sync_oldest_running_seconds", "How long the longest-running sync computation of the op has run; 0: none.",
                labels: [("op", op.rawValue)], Double(sync.map { max(0, now.at - $0.startedAt) }.max() ?? 0) / 1000)
            let held = (now.inHand ?? []).filter { $0.op == op }
            gauge("deliveryd_in_hand", "Jobs deliveryd holds (leased) now, by op; at most 50 are read.", labels: [("op", op.rawValue)], Double(held.count))
            gauge(
                "deliveryd_oldest_in_hand_seconds", "How long deliveryd has held its oldest job of the op; 0: none.",
                labels: [("op", op.rawValue)], Double(held.map { max(0, now.at - now.claimedAt($0)) }.max() ?? 0) / 1000)
        }
        for pool in now.pools {
            gauge("pool_threads", "FastCGI threads of the pool.", labels: [("pool", pool.name)], Double(pool.threads))
            gauge("pool_busy_threads", "FastCGI threads of the pool serving a request now.", labels: [("pool", pool.name)], Double(pool.busy))
            if let queued = pool.queued, let limit = pool.queueLimit {
                gauge("pool_accept_queue", "Connections waiting in the kernel for the pool to accept them (sock_diag).", labels: [("pool", pool.name)], Double(queued))
                gauge("pool_accept_queue_limit", "The pool socket's listen backlog.", labels: [("pool", pool.name)], Double(limit))
            }
        }
        if let backlog = now.backlog { gauge("backlog_jobs", "Async jobs pending or processing (the backlog bound counts these).", Double(backlog)) }
        gauge("backlog_limit", "WORKFCGI_BACKLOG_LIMIT.", Double(now.backlogLimit))
        gauge(
            "oldest_pending_age_seconds", "Age of the oldest pending async job; 0: none pending.",
            Double(now.oldestPendingAt.map { max(0, now.at - $0) } ?? 0) / 1000)
    }

    private struct NoAnswer: Error {}

    /// Each deliveryd node's state and counters as it last published them, labelled by node name (the latest
    /// start of each name; its counters restart from zero with it, which Prometheus' rate() treats as a
    /// counter reset). Written out by hand: they are snapshots, not values this process counts, and a node
    /// whose row is gone leaves no series behind.
    static func exposition(_ nodes: [DeliverydNodes.Node], now: Int64) -> String {
        func series(_ name: String, _ help: String, _ type: String, _ values: (DeliverydNodes.Node, String) -> String) -> String {
            var out = "# HELP workfcgi_\(name) \(help)\n# TYPE workfcgi_\(name) \(type)\n"
            for n in nodes { out += values(n, "node=\"\(n.status.name)\"") }
            return out
        }
        var out = series("deliveryd_node_up", "1 while the node's heartbeat is fresh (WORKFCGI_NODE_TIMEOUT).", "gauge") { n, node in
            "workfcgi_deliveryd_node_up{\(node)} \(n.liveness == .alive ? 1 : 0)\n"
        }
        out += series("deliveryd_node_heartbeat_age_seconds", "Since the node's last heartbeat (or its clean stop).", "gauge") { n, node in
            "workfcgi_deliveryd_node_heartbeat_age_seconds{\(node)} \(Double(n.ageMs) / 1000)\n"
        }
        out += series("deliveryd_node_active_workers", "Jobs the node is working on; 0 unless alive.", "gauge") { n, node in
            "workfcgi_deliveryd_node_active_workers{\(node)} \(n.liveness == .alive ? n.status.activeWorkers : 0)\n"
        }
        out += series("delivery_attempts_total", "Callback attempts since the node started, by what they decided.", "counter") { n, node in
            AttemptKind.allCases.map { "workfcgi_delivery_attempts_total{\(node),outcome=\"\($0.rawValue)\"} \(n.status.stats.attempts[$0] ?? 0)\n" }.joined()
        }
        out += series("delivery_rescued_total", "Jobs of dead nodes the node made due again (as the rescue chore's holder).", "counter") { n, node in
            "workfcgi_delivery_rescued_total{\(node)} \(n.status.stats.rescued)\n"
        }
        out += series("delivery_leases_lost_total", "Jobs the node dropped because another node had claimed them.", "counter") { n, node in
            "workfcgi_delivery_leases_lost_total{\(node)} \(n.status.stats.leasesLost)\n"
        }
        let histograms: [(String, String, (DeliveryStats) -> DeliveryStats.Histogram)] = [
            ("delivery_commit_to_callback_seconds", "From a job's commit (its 202) to the callback that delivered it.", \.commitToDelivered),
            ("delivery_claim_lag_seconds", "From when a job was due to when a node claimed it.", \.claimLag),
        ]
        for (name, help, pick) in histograms {
            out += series(name, help, "histogram") { n, node in
                let h = pick(n.status.stats)
                var text = ""
                var cumulative = 0
                for (bound, count) in zip(DeliveryStats.buckets, h.counts) {
                    cumulative += count
                    text += "workfcgi_\(name)_bucket{\(node),le=\"\(bound)\"} \(cumulative)\n"
                }
                return text + "workfcgi_\(name)_bucket{\(node),le=\"+Inf\"} \(h.count)\nworkfcgi_\(name)_sum{\(node)} \(h.sum)\n"
                    + "workfcgi_\(name)_count{\(node)} \(h.count)\n"
            }
        }
        return out
    }
}
