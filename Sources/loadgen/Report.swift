import Foundation
import Histogram

/// Percentiles of one series of latencies, in milliseconds.
struct LatencyRow {
    var name: String
    var sent: Int
    var counts: [String: Int]
    var p50 = 0.0, p95 = 0.0, p99 = 0.0, max = 0.0
    var rate: Double

    init(name: String, sent: Int, counts: [String: Int], micros: [UInt64], seconds: Double) {
        self.name = name
        self.sent = sent
        self.counts = counts
        rate = seconds > 0 ? Double(micros.count) / seconds : 0
        guard !micros.isEmpty else { return }
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        for m in micros { histogram.record(Swift.max(1, m)) }
        p50 = Double(histogram.valueAtPercentile(50)) / 1000
        p95 = Double(histogram.valueAtPercentile(95)) / 1000
        p99 = Double(histogram.valueAtPercentile(99)) / 1000
        max = Double(histogram.max) / 1000
    }
}

enum Report {
    static func table(_ rows: [LatencyRow]) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        func ms(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = "series                 sent    ok   429   503 other     p50 ms     p95 ms     p99 ms     max ms    per s\n"
        for r in rows {
            out += r.name.padding(toLength: 20, withPad: " ", startingAt: 0)
            out += pad("\(r.sent)", 7) + pad("\(r.counts["ok"] ?? 0)", 6) + pad("\(r.counts["429"] ?? 0)", 6)
            out += pad("\(r.counts["503"] ?? 0)", 6) + pad("\(r.counts["other"] ?? 0)", 6)
            out += pad(ms(r.p50), 11) + pad(ms(r.p95), 11) + pad(ms(r.p99), 11) + pad(ms(r.max), 11)
            out += pad(String(format: "%.0f", r.rate), 9) + "\n"
        }
        return out
    }

    /// p50 and p99 of each row as bars on one log-free linear scale: the picture of why async holds up.
    static func chart(_ rows: [LatencyRow], width: Int = 50) -> String {
        let top = rows.map(\.p99).max() ?? 0
        guard top > 0 else { return "" }
        var out = "latency, one █ = \(String(format: "%.1f", top / Double(width))) ms\n"
        for r in rows {
            for (label, value) in [("p50", r.p50), ("p99", r.p99)] {
                let n = Int((value / top * Double(width)).rounded())
                out += (r.name + " " + label).padding(toLength: 24, withPad: " ", startingAt: 0)
                out += String(repeating: "█", count: max(n, value > 0 ? 1 : 0)) + " " + String(format: "%.1f", value) + "\n"
            }
        }
        return out
    }
}
