import Foundation

/// What loadgen prints and writes: the table, the one-line conclusion, JSON, and a self-contained HTML
/// report (inline SVG, no scripts or external assets).
enum Report {
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
    static func ms(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : String(format: "%.1f", v) }

    static func table(_ rows: [SeriesStats], callbacks: CallbackSummary) -> String {
        var out = "series              sent      ok    429    503  other  timeout  conn  goodput/s"
        out += "     p50     p90     p95     p99   p99.9     max   (ms, successes)\n"
        for r in rows {
            let other = r.byStatus.filter { $0.key != 429 && $0.key != 503 }.values.reduce(0, +)
            out += r.name.padding(toLength: 16, withPad: " ", startingAt: 0)
            out += pad("\(r.sent)", 8) + pad("\(r.ok)", 8) + pad("\(r.byStatus[429] ?? 0)", 7) + pad("\(r.byStatus[503] ?? 0)", 7)
            out += pad("\(other)", 7) + pad("\(r.timeouts)", 9) + pad("\(r.connectionErrors)", 6) + pad(String(format: "%.0f", r.goodput), 11)
            // No successes, no latencies: a dash, never a 0.0 that reads as fast.
            for p in [50.0, 90, 95, 99, 99.9, 100] { out += pad(r.ok > 0 ? ms(r.ms(p)) : "-", 8) }
            out += "\n"
        }
        for r in rows where r.refused.totalCount > 0 {
            out += "  \(r.name) refusals: p50 \(ms(r.ms(50, refusals: true))) ms, p99 \(ms(r.ms(99, refusals: true))) ms, max \(ms(r.ms(100, refusals: true))) ms\n"
        }
        for r in rows {
            for (code, seen) in r.byCode.sorted(by: { $0.value.count > $1.value.count }) {
                out += "  \(r.name): \(seen.count) × \(seen.status) \(code): \(seen.message)\n"
            }
            if let why = r.firstConnectionError { out += "  \(r.name): \(r.connectionErrors) connection errors, first: \(why)\n" }
        }
        if callbacks.expected > 0 {
            out += "  callbacks received \(callbacks.received)/\(callbacks.expected)"
            out += callbacks.missing > 0 ? ", \(callbacks.missing) never came" : ""
            out += ", \(callbacks.duplicates) duplicates, "
            out += callbacks.signaturesChecked ? "\(callbacks.badSignatures) bad signatures\n" : "signatures not checked (\(callbacks.uncheckedBecause))\n"
        }
        return out
    }

    /// One line that says what the numbers show.
    static func conclusion(sync: SeriesStats?, ack: SeriesStats?, callbacks: CallbackSummary) -> String {
        var parts: [String] = []
        if let s = sync, s.sent > 0 {
            let refused = s.byStatus[503] ?? 0
            if s.ok == 0 {
                parts.append("no sync caller got a result (\(refused) × 503, \(s.timeouts) timeouts, \(s.connectionErrors) connection errors)")
            } else {
                parts.append("sync callers waited p99 \(ms(s.ms(99))) ms for an answer and \(refused) of \(s.sent) were turned away with 503")
            }
        }
        if let a = ack, a.sent > 0, a.ok == 0 {
            parts.append("no async caller was accepted (\(a.timeouts) timeouts, \(a.connectionErrors) connection errors)")
        } else if let a = ack, a.sent > 0 {
            var text = "async callers had their 202 in p99 \(ms(a.ms(99))) ms (\(a.ok) of \(a.sent) accepted)"
            if let s = sync, s.ok > 0, a.ms(99) > 0 { text += ", \(String(format: "%.0f", s.ms(99) / a.ms(99)))× sooner than sync" }
            parts.append(text)
        }
        if callbacks.expected > 0 {
            parts.append("\(callbacks.received) of \(callbacks.expected) results arrived by callback (p99 \(ms(callbacks.stats.ms(99))) ms after sending)")
        }
        return parts.isEmpty ? "" : "In short: " + parts.joined(separator: "; ") + "."
    }

    static func json(_ rows: [SeriesStats], callbacks: CallbackSummary, mode: String, pacing: String) throws -> Data {
        let series = rows.map { r -> [String: Any] in
            [
                "series": r.name, "sent": r.sent, "ok": r.ok, "by_status": Dictionary(uniqueKeysWithValues: r.byStatus.map { ("\($0.key)", $0.value) }),
                "by_code": r.byCode.mapValues { ["count": $0.count, "status": $0.status, "message": $0.message] },
                "timeouts": r.timeouts, "connection_errors": r.connectionErrors, "goodput_per_second": r.goodput,
                "throughput_per_second": r.throughput, "seconds": r.seconds,
                // null when there was nothing to measure.
                "latency_ms": r.ok == 0 ? NSNull() as Any
                    : ["p50": r.ms(50), "p90": r.ms(90), "p95": r.ms(95), "p99": r.ms(99), "p99.9": r.ms(99.9), "max": r.ms(100)],
                "refusal_latency_ms": r.refused.totalCount == 0 ? NSNull() as Any
                    : ["p50": r.ms(50, refusals: true), "p99": r.ms(99, refusals: true), "max": r.ms(100, refusals: true)],
                "spectrum": r.spectrum.map { ["percentile": $0.percentile, "ms": $0.ms] },
            ]
        }
        let object: [String: Any] = [
            "mode": mode, "pacing": pacing, "series": series,
            "callbacks": [
                "expected": callbacks.expected, "received": callbacks.received, "missing": callbacks.missing,
                "duplicates": callbacks.duplicates, "bad_signatures": callbacks.badSignatures, "signatures_checked": callbacks.signaturesChecked,
            ],
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    // MARK: HTML

    static let colors = ["sync response": "#d9480f", "async ack": "#1c7ed6", "async callback": "#2b8a3e"]

    /// A scatter of latency over time (log scale), one colour per series.
    static func scatter(_ rows: [SeriesStats], id: String, title: String) -> String {
        let (w, h, left, bottom) = (900.0, 320.0, 60.0, 30.0)
        let points = rows.flatMap { r in r.timeline.map { (r.name, $0.at, max($0.ms, 0.01), $0.ok) } }
        guard !points.isEmpty else { return "" }
        let maxT = max(points.map(\.1).max() ?? 1, 0.001)
        let logMin = log10(max(points.map(\.2).min() ?? 0.1, 0.01))
        let logMax = max(log10(points.map(\.2).max() ?? 1), logMin + 1)
        func x(_ t: Double) -> Double { left + t / maxT * (w - left - 10) }
        func y(_ v: Double) -> Double { (h - bottom) - (log10(v) - logMin) / (logMax - logMin) * (h - bottom - 10) }
        var svg = "<svg id=\"\(id)\" class=chart viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=img aria-label=\"\(title)\">"
        svg += "<line x1=\(left) y1=\(h - bottom) x2=\(w) y2=\(h - bottom) stroke=#999 /><line x1=\(left) y1=0 x2=\(left) y2=\(h - bottom) stroke=#999 />"
        var decade = floor(logMin)
        while decade <= ceil(logMax) {
            let v = pow(10, decade)
            if decade >= logMin - 0.01 && decade <= logMax + 0.01 {
                svg += "<text x=4 y=\(y(v) + 4) font-size=11>\(ms(v)) ms</text><line x1=\(left) y1=\(y(v)) x2=\(w) y2=\(y(v)) stroke=#eee />"
            }
            decade += 1
        }
        svg += "<text x=\(w - 230) y=\(h - 6) font-size=11>seconds into the run (\(String(format: "%.0f", maxT)) s)</text>"
        for (name, t, v, ok) in points {
            let color = colors[name] ?? "#555"
            svg += "<circle cx=\(String(format: "%.1f", x(t))) cy=\(String(format: "%.1f", y(v))) r=\(ok ? 1.6 : 2.4) fill=\"\(color)\" fill-opacity=\(ok ? "0.55" : "0.9")\(ok ? "" : " stroke=#000 stroke-width=0.4") />"
        }
        return svg + "</svg>"
    }

    /// Percentile curves: latency (log) against percentile on a "nines" scale (50, 90, 99, 99.9, ...).
    static func percentiles(_ rows: [SeriesStats]) -> String {
        let (w, h, left, bottom) = (900.0, 320.0, 60.0, 30.0)
        let curves = rows.map { ($0.name, $0.spectrum.filter { $0.percentile < 100 && $0.ms > 0 }) }.filter { !$0.1.isEmpty }
        guard !curves.isEmpty else { return "" }
        let all = curves.flatMap { $0.1.map(\.ms) }
        let logMin = log10(max(all.min() ?? 0.1, 0.01)), logMax = max(log10(all.max() ?? 1), logMin + 1)
        let nines = 5.0
        func x(_ p: Double) -> Double { left + min(-log10(max(1 - p / 100, 1e-5)), nines) / nines * (w - left - 10) }
        func y(_ v: Double) -> Double { (h - bottom) - (log10(max(v, 0.01)) - logMin) / (logMax - logMin) * (h - bottom - 10) }
        var svg = "<svg id=percentiles class=chart viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=img aria-label=\"latency by percentile\">"
        svg += "<line x1=\(left) y1=\(h - bottom) x2=\(w) y2=\(h - bottom) stroke=#999 /><line x1=\(left) y1=0 x2=\(left) y2=\(h - bottom) stroke=#999 />"
        for (p, label) in [(0.0, "0"), (90, "90"), (99, "99"), (99.9, "99.9"), (99.99, "99.99")] {
            svg += "<text x=\(x(p) - 8) y=\(h - 8) font-size=11>\(label)</text>"
        }
        var decade = floor(logMin)
        while decade <= ceil(logMax) {
            let v = pow(10, decade)
            if decade >= logMin - 0.01 { svg += "<text x=4 y=\(y(v) + 4) font-size=11>\(ms(v)) ms</text>" }
            decade += 1
        }
        for (name, points) in curves {
            let path = points.map { String(format: "%.1f,%.1f", x($0.percentile), y($0.ms)) }.joined(separator: " ")
            svg += "<polyline fill=none stroke=\"\(colors[name] ?? "#555")\" stroke-width=2 points=\"\(path)\" />"
        }
        return svg + "</svg>"
    }

    static func html(_ rows: [SeriesStats], callbacks: CallbackSummary, title: String) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let answers = rows.filter { $0.name != "async callback" }
        let legend = rows.map { "<span style=\"color:\(colors[$0.name] ?? "#555")\">● \(esc($0.name))</span>" }.joined(separator: " &nbsp; ")
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
            <style>body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#222;max-width:62rem}.chart{width:100%;height:auto;border:1px solid #eee}
            pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font:12px ui-monospace,monospace}</style></head><body>
            <h1>\(esc(title))</h1><p>\(esc(conclusion(sync: rows.first { $0.name == "sync response" }, ack: rows.first { $0.name == "async ack" }, callbacks: callbacks)))</p>
            <pre>\(esc(table(rows, callbacks: callbacks)))</pre>
            <p>\(legend) &nbsp; (refusals and errors outlined)</p>
            <h2>Time to answer, over the run</h2><p>Each request's answer: the sync result, or the async 202. Like with like.</p>
            \(scatter(answers, id: "answers", title: "time to answer over the run"))
            <h2>Time to callback, over the run</h2><p>From sending the async request to its result arriving here.</p>
            \(scatter(rows.filter { $0.name == "async callback" }, id: "callbacks", title: "time to callback over the run"))
            <h2>Latency by percentile</h2>
            \(percentiles(rows))
            </body></html>

            """
    }
}
