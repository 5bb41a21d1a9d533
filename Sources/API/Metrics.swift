import Prometheus
import Synchronization
import Store

/// workfcgi's Prometheus metrics (GET /metrics): response counts by route and status, sync timings, and,
/// read from the database when scraped, requests by mode and status and deliveryd's health.
final class Metrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let syncDuration: DurationHistogram
    private let syncWait: DurationHistogram

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

    /// A /sync answer whose record could not be stored (the client got its result; GET /requests will 404).
    func syncRecordLost(full: Bool) {
        registry.makeCounter(
            descriptor: Self.name("sync_records_lost", "total", "Sync results answered but not recorded, by reason."),
            labels: [("reason", full ? "store_full" : "store_error")]
        ).increment()
    }

    /// An /async job refused because the database reached its size bound.
    func storeFull() {
        registry.makeCounter(descriptor: Self.name("store_full_refusals", "total", "Async jobs refused with 503 storage_full.")).increment()
    }

    private func gauge(_ metric: String, _ help: String, labels: [(String, String)] = [], _ value: Double) {
        registry.makeGauge(descriptor: Self.name(metric, "", help), labels: labels).set(to: value)
    }

    /// The exposition text, after refreshing the gauges that are read rather than counted.
    func render(store: any JobStore, syncInFlight: Int) -> [UInt8] {
        gauge("sync_in_flight", "Sync computations running now.", Double(syncInFlight))
        do {
            for (mode, status, count) in try store.statusCounts() {
                gauge("requests", "Stored requests by mode and status.", labels: [("mode", mode), ("status", status.rawValue)], Double(count))
            }
            let daemon = try store.daemonStatus()
            let alive = daemon?.isAlive(now: Clock.nowMillis()) ?? false
            gauge("deliveryd_up", "1 while deliveryd's heartbeat is fresh.", alive ? 1 : 0)
            gauge("deliveryd_active_workers", "Jobs deliveryd is working on.", Double(alive ? daemon?.activeWorkers ?? 0 : 0))
            var open = 0
            if alive, case .array(let circuits)? = daemon?.circuits { open = circuits.count }
            gauge("callback_circuits_open", "Callback hosts whose circuit breaker is open or half-open.", Double(open))
            gauge("database_up", "1 when the database answered this scrape.", 1)
        } catch {
            gauge("database_up", "1 when the database answered this scrape.", 0)
        }
        return registry.emitToBuffer()
    }
}
