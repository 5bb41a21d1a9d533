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

    static func json(_ rows: [SeriesStats], callbacks: CallbackSummary, mode: String, pacing: String, info: RunInfo? = nil) throws -> Data {
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
                // Counts per second of the run (index = second), by class.
                "per_second": Dictionary(uniqueKeysWithValues: StatusClass.allCases.map { c in (c.label, r.rates.counts.map { $0[c.rawValue] }) }),
            ]
        }
        var object: [String: Any] = [
            "mode": mode, "pacing": pacing, "series": series,
            "callbacks": [
                "expected": callbacks.expected, "received": callbacks.received, "missing": callbacks.missing,
                "duplicates": callbacks.duplicates, "bad_signatures": callbacks.badSignatures, "signatures_checked": callbacks.signaturesChecked,
            ],
        ]
        if let info {
            object["run"] = ["started": info.startedText, "target": info.target, "version": info.version, "arguments": info.arguments, "effective": info.effective]
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    // MARK: HTML

    static let colors = ["sync response": "#d9480f", "async ack": "#1c7ed6", "async callback": "#2b8a3e"]

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func f1(_ v: Double) -> String { String(format: "%.1f", v) }

    /// The time axis: a tick with its label every few seconds, and the axis' name.
    static func timeAxis(maxT: Double, x: (Double) -> Double, top: Double, bottom: Double, width: Double) -> String {
        var svg = ""
        for t in Axis.ticks(maxT) where t <= maxT + 1e-9 {
            svg += "<line x1=\(f1(x(t))) y1=\(f1(bottom)) x2=\(f1(x(t))) y2=\(f1(bottom + 5)) stroke=#999 />"
            svg += "<line x1=\(f1(x(t))) y1=\(f1(top)) x2=\(f1(x(t))) y2=\(f1(bottom)) stroke=#f1f1f1 />"
            svg += "<text class=tick x=\(f1(x(t))) y=\(f1(bottom + 17)) font-size=11 text-anchor=middle>\(Axis.label(t, unit: "s"))</text>"
        }
        return svg + "<text x=\(f1(width - 4)) y=\(f1(bottom + 32)) font-size=11 text-anchor=end fill=#555>seconds into the run</text>"
    }

    /// A scatter of latency over time (log scale), one colour per series.
    /// `until`: where the time axis ends at least (the whole run's), so every chart over time shares one axis.
    static func scatter(_ rows: [SeriesStats], id: String, title: String, until: Double = 0) -> String {
        let (w, h, left, bottom) = (900.0, 340.0, 60.0, 40.0)
        let points = rows.flatMap { r in r.timeline.map { (r.name, $0.at, max($0.ms, 0.01), $0.ok) } }
        guard !points.isEmpty else { return "" }
        let maxT = max(points.map(\.1).max() ?? 1, until, 0.001)
        let logMin = log10(max(points.map(\.2).min() ?? 0.1, 0.01))
        let logMax = max(log10(points.map(\.2).max() ?? 1), logMin + 1)
        func x(_ t: Double) -> Double { left + t / maxT * (w - left - 10) }
        func y(_ v: Double) -> Double { (h - bottom) - (log10(v) - logMin) / (logMax - logMin) * (h - bottom - 10) }
        var svg = "<svg id=\"\(id)\" class=chart viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=img aria-label=\"\(title)\">"
        svg += timeAxis(maxT: maxT, x: x, top: 0, bottom: h - bottom, width: w)
        svg += "<line x1=\(left) y1=\(h - bottom) x2=\(w) y2=\(h - bottom) stroke=#999 /><line x1=\(left) y1=0 x2=\(left) y2=\(h - bottom) stroke=#999 />"
        var decade = floor(logMin)
        while decade <= ceil(logMax) {
            let v = pow(10, decade)
            if decade >= logMin - 0.01 && decade <= logMax + 0.01 {
                svg += "<text x=4 y=\(y(v) + 4) font-size=11>\(ms(v)) ms</text><line x1=\(left) y1=\(y(v)) x2=\(w) y2=\(y(v)) stroke=#eee />"
            }
            decade += 1
        }
        for (name, t, v, ok) in points {
            let color = colors[name] ?? "#555"
            svg += "<circle cx=\(f1(x(t))) cy=\(f1(y(v))) r=\(ok ? 1.6 : 2.4) fill=\"\(color)\" fill-opacity=\(ok ? "0.55" : "0.9")\(ok ? "" : " stroke=#000 stroke-width=0.4") />"
        }
        return svg + "</svg>"
    }

    /// Answers and refusals per second over the run, one line per status class (2xx, 429, 503, other),
    /// for one series: where the refusals started, and whether answers kept coming meanwhile.
    static func rateChart(_ r: SeriesStats, id: String, seconds: Double) -> String {
        let (w, h, left, bottom) = (900.0, 240.0, 60.0, 40.0)
        let span = max(Int(seconds.rounded(.up)), r.rates.counts.count, 1)
        let width = RateBuckets.width(forSeconds: span)
        let buckets = r.rates.rates(width: width)
        let present = StatusClass.allCases.filter { r.rates.count($0) > 0 }
        guard !buckets.isEmpty, !present.isEmpty else { return "" }
        let maxT = Double(max(span, 1))
        let peak = buckets.flatMap { b in present.map { b.perSecond[$0.rawValue] } }.max() ?? 1
        let yTicks = Axis.ticks(max(peak, 1), target: 4)
        let top = yTicks.last ?? 1
        func x(_ t: Double) -> Double { left + t / maxT * (w - left - 10) }
        // The legend has its own strip above the plot, clear of the top tick and of a line at the peak.
        let plotTop = 26.0
        func y(_ v: Double) -> Double { (h - bottom) - v / top * (h - bottom - plotTop) }
        var svg = "<svg id=\"\(id)\" class=chart viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=img aria-label=\"\(esc(r.name)): answers and refusals per second\">"
        svg += timeAxis(maxT: maxT, x: x, top: plotTop, bottom: h - bottom, width: w)
        for v in yTicks {
            svg += "<line x1=\(left) y1=\(f1(y(v))) x2=\(w) y2=\(f1(y(v))) stroke=#eee />"
            svg += "<text x=\(left - 6) y=\(f1(y(v) + 4)) font-size=11 text-anchor=end>\(Axis.label(v))</text>"
        }
        svg += "<line x1=\(left) y1=\(h - bottom) x2=\(w) y2=\(h - bottom) stroke=#999 /><line x1=\(left) y1=\(plotTop) x2=\(left) y2=\(h - bottom) stroke=#999 />"
        svg += "<text x=4 y=14 font-size=11 fill=#555>per s</text>"
        for c in present {
            // A step per bucket: the rate holds for the whole bucket.
            var points: [String] = []
            for b in buckets {
                let v = y(b.perSecond[c.rawValue])
                points.append("\(f1(x(b.at))),\(f1(v))")
                points.append("\(f1(x(min(b.at + Double(width), maxT)))),\(f1(v))")
            }
            svg += "<polyline class=\"rate-\(c.label)\" fill=none stroke=\"\(c.color)\" stroke-width=1.8 points=\"\(points.joined(separator: " "))\" />"
        }
        var lx = left + 12
        for c in present {
            svg += "<rect x=\(f1(lx)) y=8 width=12 height=3 fill=\"\(c.color)\" /><text x=\(f1(lx + 16)) y=14 font-size=11>\(c.label) (\(r.rates.count(c)))</text>"
            lx += 110
        }
        if width > 1 { svg += "<text x=\(w - 4) y=14 font-size=11 text-anchor=end fill=#555>mean over \(width) s</text>" }
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

    /// The table as HTML: columns that wrap or scroll inside their box at any width, never cut off.
    static func htmlTable(_ rows: [SeriesStats]) -> String {
        let heads = ["series", "sent", "ok", "429", "503", "other", "timeout", "conn", "goodput/s", "p50", "p90", "p95", "p99", "p99.9", "max"]
        var out = "<div class=scroll><table id=figures><thead><tr>"
        out += heads.map { "<th>\($0)</th>" }.joined() + "</tr></thead><tbody>"
        for r in rows {
            let other = r.byStatus.filter { $0.key != 429 && $0.key != 503 }.values.reduce(0, +)
            let cells = ["\(r.sent)", "\(r.ok)", "\(r.byStatus[429] ?? 0)", "\(r.byStatus[503] ?? 0)", "\(other)", "\(r.timeouts)",
                         "\(r.connectionErrors)", String(format: "%.0f", r.goodput)]
                + [50.0, 90, 95, 99, 99.9, 100].map { r.ok > 0 ? ms(r.ms($0)) : "-" }
            out += "<tr><th scope=row><span style=\"color:\(colors[r.name] ?? "#555")\">●</span> \(esc(r.name))</th>"
            out += cells.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }
        return out + "</tbody></table></div><p class=note>Latencies in ms, of successes (refusals apart, below).</p>"
    }

    /// The notes below the text table (refusal latencies, error codes, callbacks) as a list.
    static func notes(_ rows: [SeriesStats], callbacks: CallbackSummary) -> String {
        let lines = table(rows, callbacks: callbacks).split(separator: "\n").dropFirst(1 + rows.count)
        guard !lines.isEmpty else { return "" }
        return "<ul class=notes>" + lines.map { "<li>\(esc($0.trimmingCharacters(in: .whitespaces)))</li>" }.joined() + "</ul>"
    }

    static func metadata(_ info: RunInfo) -> String {
        let items = [("date (UTC)", info.startedText), ("target", info.target), ("loadgen", info.version), ("run", info.effective),
                     ("command", info.commandLine)]
        return "<dl id=run>" + items.map { "<dt>\($0.0)</dt><dd>\(esc($0.1))</dd>" }.joined() + "</dl>"
    }

    static func html(_ rows: [SeriesStats], callbacks: CallbackSummary, title: String, info: RunInfo) -> String {
        let answers = rows.filter { $0.name != "async callback" }
        let legend = rows.map { "<span style=\"color:\(colors[$0.name] ?? "#555")\">● \(esc($0.name))</span>" }.joined(separator: " &nbsp; ")
        // One time axis for every chart over time: the longest series' (callbacks arrive last).
        let seconds = Double(max(Int((rows.map(\.seconds).max() ?? 0).rounded(.up)), rows.map(\.rates.counts.count).max() ?? 0))
        let rates = rows.enumerated().map { i, r in
            let chart = rateChart(r, id: "rates-\(i)", seconds: seconds)
            return chart.isEmpty ? "" : "<h3>\(esc(r.name))</h3>\n\(chart)"
        }.joined(separator: "\n")
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(esc(title))</title>
            <style>body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;padding:0 1.5rem;color:#222;max-width:80rem}
            .chart{width:100%;height:auto;border:1px solid #eee;display:block}h1{font-size:1.4rem;overflow-wrap:anywhere}
            h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem;margin:1rem 0 .3rem}
            .scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font:12px ui-monospace,monospace}
            th,td{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
            thead th{background:#f6f6f6}th:first-child{text-align:left}.note{color:#555;font-size:12px;margin:.3rem 0}
            ul.notes{font:12px ui-monospace,monospace;padding-left:1.2rem;overflow-wrap:anywhere}
            dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:13px}dt{color:#555}
            dd{margin:0;font-family:ui-monospace,monospace;overflow-wrap:anywhere}</style></head><body>
            <h1>\(esc(title))</h1>
            \(metadata(info))
            <p>\(esc(conclusion(sync: rows.first { $0.name == "sync response" }, ack: rows.first { $0.name == "async ack" }, callbacks: callbacks)))</p>
            \(htmlTable(rows))
            \(notes(rows, callbacks: callbacks))
            <h2>Answers and refusals per second</h2><p>Every request counted in the second it ended: 2xx answers, 429 (nginx's rate limit), 503 (workfcgi's bounds) and other (other statuses, timeouts, connection errors); for the callbacks, when each arrived.</p>
            \(rates)
            <p>\(legend) &nbsp; (refusals and errors outlined)</p>
            <h2>Time to answer, over the run</h2><p>Each request's answer: the sync result, or the async 202. Like with like.</p>
            \(scatter(answers, id: "answers", title: "time to answer over the run", until: seconds))
            <h2>Time to callback, over the run</h2><p>From sending the async request to its result arriving here.</p>
            \(scatter(rows.filter { $0.name == "async callback" }, id: "callbacks", title: "time to callback over the run", until: seconds))
            <h2>Latency by percentile</h2>
            \(percentiles(rows))
            </body></html>

            """
    }
}
