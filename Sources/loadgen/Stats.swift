import Histogram

/// How one request ended, from the load generator's side.
struct Outcome: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        /// The status the series expects (200 for /sync, 202 for /async).
        case success
        /// Any other HTTP answer; `code` is the server's JSON error code when it sent one.
        case refused(status: Int, code: String?, message: String?)
        case timeout
        case connectionError(String)
    }
    var kind: Kind
    /// Latency in microseconds (open loop: from the intended send time).
    var micros: UInt64
    /// Seconds after the run's start at which it ended (for latency over time).
    var at: Double
}

/// One series' figures: counts by outcome and error code, latencies of successes and of refusals kept
/// apart (HdrHistogram), goodput, and a thinned timeline for the report's charts.
struct SeriesStats: Sendable {
    var name: String
    var sent = 0
    var ok = 0
    var byStatus: [Int: Int] = [:]
    /// Server error codes: how often, and the message the first time each was seen.
    var byCode: [String: (count: Int, status: Int, message: String)] = [:]
    var timeouts = 0
    var connectionErrors = 0
    var firstConnectionError: String?
    var success = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    var refused = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// (seconds since start, latency ms, success) for charts; every `stride`-th point once it is long.
    var timeline: [(at: Double, ms: Double, ok: Bool)] = []
    /// Every outcome by class and second, for the rates over time.
    var rates = RateBuckets()
    var seconds = 0.0

    init(name: String) { self.name = name }

    mutating func record(_ o: Outcome) {
        sent += 1
        let micros = max(1, o.micros)
        switch o.kind {
        case .success:
            ok += 1
            success.record(micros)
        case .refused(let status, let code, let message):
            byStatus[status, default: 0] += 1
            refused.record(micros)
            if let code {
                let seen = byCode[code]
                byCode[code] = ((seen?.count ?? 0) + 1, status, seen?.message ?? message ?? "")
            }
        case .timeout:
            timeouts += 1
        case .connectionError(let why):
            connectionErrors += 1
            if firstConnectionError == nil { firstConnectionError = why }
        }
        rates.add(StatusClass(o.kind), at: o.at)
        if timeline.count < 4000 || sent % (sent / 4000 + 1) == 0 {
            timeline.append((o.at, Double(o.micros) / 1000, o.kind == .success))
        }
    }

    /// Milliseconds at `percentile` (0...100) of the successes; 0 when there were none.
    func ms(_ percentile: Double, refusals: Bool = false) -> Double {
        let h = refusals ? refused : success
        guard h.totalCount > 0 else { return 0 }
        return Double(percentile >= 100 ? h.max : h.valueAtPercentile(percentile)) / 1000
    }

    var errors: Int { sent - ok }
    /// Successes per second over the run.
    var goodput: Double { seconds > 0 ? Double(ok) / seconds : 0 }
    var throughput: Double { seconds > 0 ? Double(sent) / seconds : 0 }

    /// The percentile spectrum of successes: (percentile, ms) at 0, 50, 75, 87.5, ... up to 99.999 and max.
    var spectrum: [(percentile: Double, ms: Double)] {
        guard success.totalCount > 0 else { return [] }
        var out: [(Double, Double)] = []
        var p = 0.0
        while p < 99.999 {
            out.append((p, ms(p)))
            p = 100 - (100 - p) / 2
        }
        out.append((100, ms(100)))
        return out
    }
}
