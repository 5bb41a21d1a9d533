import JSON
import Synchronization
import WorkEngine

/// This process's handler runs (a `HandlerTally` behind a lock), and their Prometheus text.
public final class HandlerMetrics: Sendable {
    private let tally = Mutex(HandlerTally())

    public init() {}

    func record(_ run: HandlerRun, mode: RequestMode, seconds: Double) {
        tally.withLock { $0.record(run, mode: mode, seconds: seconds) }
    }

    public var snapshot: HandlerTally { tally.withLock { $0 } }

    /// Prometheus text: `workfcgi_handler_runs_total`, `_failures_total`, `_timeouts_total` and the
    /// `workfcgi_handler_duration_seconds` histogram, each labelled by handler and mode. Handler names
    /// are `HandlerName`s, so they need no escaping as label values.
    public static func prometheus(_ tally: HandlerTally) -> String {
        let sorted = tally.sorted
        guard !sorted.isEmpty else { return "" }
        var out = ""
        for (name, help, value) in [
            ("workfcgi_handler_runs_total", "Handler runs, by handler and mode.", { (c: HandlerTally.Counts) in c.runs }),
            ("workfcgi_handler_failures_total", "Handler runs that failed (any reason, timeouts included).", { $0.failures }),
            ("workfcgi_handler_timeouts_total", "Handler runs killed at their timeout.", { $0.timeouts }),
        ] {
            out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
            for (key, c) in sorted { out += "\(name){handler=\"\(key.handler)\",mode=\"\(key.mode.rawValue)\"} \(value(c))\n" }
        }
        let h = "workfcgi_handler_duration_seconds"
        out += "# HELP \(h) Wall time of handler runs.\n# TYPE \(h) histogram\n"
        for (key, c) in sorted {
            let labels = "handler=\"\(key.handler)\",mode=\"\(key.mode.rawValue)\""
            var cumulative = 0
            for (i, bound) in HandlerTally.buckets.enumerated() {
                cumulative += c.bucketCounts[i]
                out += "\(h)_bucket{\(labels),le=\"\(JSONValue.number(bound).text)\"} \(cumulative)\n"
            }
            out += "\(h)_bucket{\(labels),le=\"+Inf\"} \(c.runs)\n\(h)_sum{\(labels)} \(c.seconds)\n\(h)_count{\(labels)} \(c.runs)\n"
        }
        return out
    }
}
