import JSON

/// Per handler and mode: runs, failures, timeouts (uWSGI's "harakiri" count) and a duration histogram.
/// A value, so each daemon keeps its own (workfcgi the /sync runs, deliveryd the /async ones, published
/// with its heartbeat) and /metrics and /ui add them up. `json` is its one encoding, in any store.
public struct HandlerTally: Sendable, Equatable {
    /// Upper bounds of the duration buckets, in seconds (Prometheus `le`); the last bucket is +Inf.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

    public struct Key: Hashable, Sendable, Comparable {
        public var handler: String
        public var mode: RequestMode
        public init(handler: String, mode: RequestMode) {
            self.handler = handler
            self.mode = mode
        }
        public static func < (a: Key, b: Key) -> Bool { (a.handler, a.mode.rawValue) < (b.handler, b.mode.rawValue) }
    }

    public struct Counts: Sendable, Equatable {
        public var runs = 0
        public var failures = 0
        public var timeouts = 0
        /// Per bucket of `buckets` (not cumulative), then the +Inf bucket.
        public var bucketCounts = [Int](repeating: 0, count: HandlerTally.buckets.count + 1)
        public var seconds = 0.0
        public init() {}

        mutating func add(_ other: Counts) {
            runs += other.runs
            failures += other.failures
            timeouts += other.timeouts
            for i in bucketCounts.indices { bucketCounts[i] += other.bucketCounts[i] }
            seconds += other.seconds
        }

        /// The upper bound of the bucket holding the `q` quantile (so "at most this"), `.infinity` when it
        /// is above every bound, nil without runs.
        public func quantile(_ q: Double) -> Double? {
            guard runs > 0 else { return nil }
            let rank = max(1, Int((q * Double(runs)).rounded(.up)))
            var cumulative = 0
            for (i, n) in bucketCounts.enumerated() {
                cumulative += n
                if cumulative >= rank { return i < HandlerTally.buckets.count ? HandlerTally.buckets[i] : .infinity }
            }
            return .infinity
        }
    }

    public var counts: [Key: Counts] = [:]

    public init() {}

    public mutating func record(_ run: HandlerRun, mode: RequestMode, seconds: Double) {
        var c = counts[Key(handler: run.handler, mode: mode)] ?? Counts()
        c.runs += 1
        if run.errorCode != nil { c.failures += 1 }
        if case .timedOut = run.outcome { c.timeouts += 1 }
        let value = max(0, seconds)
        c.bucketCounts[Self.buckets.firstIndex { value <= $0 } ?? Self.buckets.count] += 1
        c.seconds += value
        counts[Key(handler: run.handler, mode: mode)] = c
    }

    /// Both tallies' runs, summed where a handler and mode appear in both.
    public func merged(with other: HandlerTally) -> HandlerTally {
        var out = self
        for (key, c) in other.counts { out.counts[key, default: Counts()].add(c) }
        return out
    }

    /// Every (handler, mode) in order, with its counts.
    public var sorted: [(key: Key, counts: Counts)] { counts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }

    /// `[{"handler", "mode", "runs", "failures", "timeouts", "buckets": [per bucket], "seconds"}]`.
    public var json: JSONValue {
        .array(
            sorted.map { key, c in
                [
                    "handler": .string(key.handler), "mode": .string(key.mode.rawValue), "runs": .number(Double(c.runs)),
                    "failures": .number(Double(c.failures)), "timeouts": .number(Double(c.timeouts)),
                    "buckets": .array(c.bucketCounts.map { .number(Double($0)) }), "seconds": .number(c.seconds),
                ]
            })
    }

    /// Reads `json` back. An entry that is malformed, or names no valid handler (the name becomes a
    /// Prometheus label and HTML), is dropped: what is missing reads as no runs.
    public init(json: JSONValue?) {
        guard case .array(let items)? = json else { return }
        for item in items {
            guard let handler = item["handler"]?.stringValue, HandlerName.isValid(handler),
                let mode = item["mode"]?.stringValue.flatMap(RequestMode.init(rawValue:)),
                case .array(let buckets)? = item["buckets"], buckets.count == Self.buckets.count + 1
            else { continue }
            var c = Counts()
            c.runs = max(0, item["runs"]?.intValue ?? 0)
            c.failures = max(0, item["failures"]?.intValue ?? 0)
            c.timeouts = max(0, item["timeouts"]?.intValue ?? 0)
            c.bucketCounts = buckets.map { max(0, $0.intValue ?? 0) }
            c.seconds = max(0, item["seconds"]?.doubleValue ?? 0)
            counts[Key(handler: handler, mode: mode), default: Counts()].add(c)
        }
    }
}
