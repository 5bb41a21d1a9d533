import JSON
import WorkEngine

/// deliveryd's counters since it started, published with every heartbeat so workfcgi's /metrics can show
/// them (deliveryd serves no HTTP). Pure; deliveryd keeps it in a lock.
public struct DeliveryStats: Sendable, Equatable {
    /// Upper bounds, in seconds, of both histograms' buckets.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600]

    /// Attempts by what they decided.
    public var attempts: [AttemptKind: Int] = [:]
    /// From the job's commit (its 202) to the attempt that delivered it, retries included.
    public var commitToDelivered = Histogram()
    /// From when a job was due to when deliveryd claimed it: how far behind the queue is.
    public var claimLag = Histogram()
    /// deliveryd's handler runs (all async), by handler.
    public var handlers = HandlerTally()
    /// Jobs this node took back from dead nodes, as the rescue chore's holder.
    public var rescued = 0
    /// Jobs this node dropped when its heartbeat found them leased by another node (this one stalled past the
    /// node timeout, or their lease ran out): neither sent nor written any more.
    public var leasesLost = 0

    public init() {}

    public struct Histogram: Sendable, Equatable {
        /// Observations per bucket (not cumulative); the last entry counts those above every bound.
        public var counts = [Int](repeating: 0, count: DeliveryStats.buckets.count + 1)
        public var sum = 0.0
        public var count: Int { counts.reduce(0, +) }

        public mutating func observe(_ seconds: Double) {
            let value = max(0, seconds)
            counts[DeliveryStats.buckets.firstIndex { value <= $0 } ?? DeliveryStats.buckets.count] += 1
            sum += value
        }

        var json: JSONValue { ["counts": .array(counts.map { .number(Double($0)) }), "sum": .number(sum)] }

        init() {}

        init?(json: JSONValue?) {
            guard case .array(let items)? = json?["counts"], items.count == counts.count, let sum = json?["sum"]?.doubleValue else {
                return nil
            }
            counts = items.map { $0.intValue ?? 0 }
            self.sum = sum
        }
    }

    public mutating func recorded(_ outcome: AttemptOutcome) {
        attempts[outcome.kind, default: 0] += 1
    }

    public var json: JSONValue {
        [
            "attempts": .object(Dictionary(uniqueKeysWithValues: attempts.map { ($0.key.rawValue, .number(Double($0.value))) })), "commit_to_delivered": commitToDelivered.json,
            "claim_lag": claimLag.json, "handlers": handlers.json, "rescued": .number(Double(rescued)),
            "leases_lost": .number(Double(leasesLost)),
        ]
    }

    /// Reads `json` back; what is missing or malformed reads as empty (an older deliveryd).
    public init(json: JSONValue) {
        for (key, value) in json["attempts"]?.objectValue ?? [:] {
            if let kind = AttemptKind(rawValue: key) { attempts[kind] = value.intValue ?? 0 }
        }
        commitToDelivered = Histogram(json: json["commit_to_delivered"]) ?? Histogram()
        claimLag = Histogram(json: json["claim_lag"]) ?? Histogram()
        handlers = HandlerTally(json: json["handlers"])
        rescued = json["rescued"]?.intValue ?? 0
        leasesLost = json["leases_lost"]?.intValue ?? 0
    }
}
