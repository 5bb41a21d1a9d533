import Synchronization
import WorkEngine
import JSON

/// Per handler and mode: runs, failures, timeouts (uWSGI's "harakiri" count) and a duration histogram.
/// workfcgi renders its own (the /sync runs) into /metrics; deliveryd's are not published yet.
public final class HandlerMetrics: Sendable {
    /// Upper bounds of the duration buckets, in seconds (Prometheus `le`); the last bucket is +Inf.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

    public struct Counts: Sendable, Equatable {
        public var runs = 0
        public var failures = 0
        public var timeouts = 0
        /// Per bucket of `buckets` (not cumulative), then the +Inf bucket.
        public var bucketCounts = [Int](repeating: 0, count: HandlerMetrics.buckets.count + 1)
        public var seconds = 0.0
        public init() {}

        mutating func add(_ run: HandlerRun, seconds: Double) {
            runs += 1
            if run.errorCode != nil { failures += 1 }
            if case .timedOut = run.outcome { timeouts += 1 }
            bucketCounts[HandlerMetrics.buckets.firstIndex { seconds <= $0 } ?? HandlerMetrics.buckets.count] += 1
            self.seconds += seconds
        }
    }

    /// Keyed by handler name and mode ("sync" or "async").
    private let counts = Mutex<[Key: Counts]>([:])

    public struct Key: Hashable, Sendable, Comparable {
        public var handler: String
        public var mode: String
        public static func < (a: Key, b: Key) -> Bool { (a.handler, a.mode) < (b.handler, b.mode) }
    }

    public init() {}

    func record(_ run: HandlerRun, mode: RequestMode, seconds: Double) {
        counts.withLock { $0[Key(handler: run.handler, mode: mode.rawValue), default: Counts()].add(run, seconds: seconds) }
    }

    public var snapshot: [Key: Counts] { counts.withLock { $0 } }

    /// Prometheus text: `workfcgi_handler_runs_total`, `_failures_total`, `_timeouts_total` and the
    /// `workfcgi_handler_duration_seconds` histogram, each labelled by handler and mode.
    public static func prometheus(_ counts: [Key: Counts]) -> String {
        guard !counts.isEmpty else { return "" }
        var out = ""
        let sorted = counts.sorted { $0.key < $1.key }
        for (name, help, value) in [
            ("workfcgi_handler_runs_total", "Handler runs, by handler and mode.", { (c: Counts) in c.runs }),
            ("workfcgi_handler_failures_total", "Handler runs that failed (any reason, timeouts included).", { $0.failures }),
            ("workfcgi_handler_timeouts_total", "Handler runs killed at their timeout.", { $0.timeouts }),
        ] {
            out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
            for (key, c) in sorted { out += "\(name){handler=\"\(key.handler)\",mode=\"\(key.mode)\"} \(value(c))\n" }
        }
        let h = "workfcgi_handler_duration_seconds"
        out += "# HELP \(h) Wall time of handler runs.\n# TYPE \(h) histogram\n"
        for (key, c) in sorted {
            let labels = "handler=\"\(key.handler)\",mode=\"\(key.mode)\""
            var cumulative = 0
            for (i, bound) in buckets.enumerated() {
                cumulative += c.bucketCounts[i]
                out += "\(h)_bucket{\(labels),le=\"\(JSONValue.number(bound).text)\"} \(cumulative)\n"
            }
            out += "\(h)_bucket{\(labels),le=\"+Inf\"} \(c.runs)\n\(h)_sum{\(labels)} \(c.seconds)\n\(h)_count{\(labels)} \(c.runs)\n"
        }
        return out
    }
}
