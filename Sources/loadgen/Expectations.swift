import Foundation

/// `--expect "async.ack.p99<50ms,callbacks=all,sync.503>0"`: conditions on the run's figures; the run fails
/// (exit 1) when one does not hold. A term is `SERIES.FIGURE OP VALUE`, or `callbacks=all`.
/// Series: `sync`, `async` (= `async.ack`), `callbacks` (= `async.callback`). Figures: p50 p90 p95 p99 p99.9
/// max (of successes; values take ms or s), sent ok errors timeouts goodput, or an HTTP status (503, 429, ...).
struct Expectation: Sendable, Equatable {
    enum Op: String, Sendable, CaseIterable { case le = "<=", ge = ">=", lt = "<", gt = ">", eq = "=" }
    var series: String
    var figure: String
    var op: Op
    /// nil for `callbacks=all`.
    var value: Double?
    var text: String

    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ list: String) throws(ParseError) -> [Expectation] {
        var out: [Expectation] = []
        for raw in list.split(separator: ",") {
            let term = raw.trimmingCharacters(in: .whitespaces)
            if term == "callbacks=all" {
                out.append(Expectation(series: "callbacks", figure: "all", op: .eq, value: nil, text: term))
                continue
            }
            guard let op = Op.allCases.first(where: { term.contains($0.rawValue) }),
                let range = term.range(of: op.rawValue)
            else { throw ParseError(description: "'\(term)': expected SERIES.FIGURE<VALUE (ops: <, <=, >, >=, =)") }
            let lhs = term[..<range.lowerBound]
            var rhs = term[range.upperBound...].trimmingCharacters(in: .whitespaces).lowercased()
            var scale = 1.0
            if rhs.hasSuffix("ms") { rhs.removeLast(2) } else if rhs.hasSuffix("s") { rhs.removeLast(); scale = 1000 }
            guard let number = Double(rhs) else { throw ParseError(description: "'\(term)': '\(rhs)' is not a number") }
            var parts = lhs.split(separator: ".").map(String.init)
            if parts.first == "async" && parts.count > 1 && (parts[1] == "ack" || parts[1] == "callback") {
                parts[0] = parts[1] == "ack" ? "async" : "callbacks"
                parts.remove(at: 1)
            }
            guard parts.count >= 2, ["sync", "async", "callbacks"].contains(parts[0]) else {
                throw ParseError(description: "'\(term)': series must be sync, async (async.ack) or callbacks (async.callback)")
            }
            out.append(Expectation(series: parts[0], figure: parts[1...].joined(separator: "."), op: op, value: number * scale, text: term))
        }
        return out
    }

    /// The figure this term names, from `stats`; nil when the run has no such figure.
    func measured(_ stats: SeriesStats?, callbacks: (received: Int, expected: Int)) -> Double? {
        if figure == "all" { return Double(callbacks.received) }
        guard let s = stats else { return nil }
        // A latency of no successes is not 0: the term cannot hold.
        if Self.latencies.contains(figure) && s.ok == 0 { return nil }
        switch figure {
        case "p50": return s.ms(50)
        case "p90": return s.ms(90)
        case "p95": return s.ms(95)
        case "p99": return s.ms(99)
        case "p99.9": return s.ms(99.9)
        case "max": return s.ms(100)
        case "sent": return Double(s.sent)
        case "ok": return Double(s.ok)
        case "errors": return Double(s.errors)
        case "timeouts": return Double(s.timeouts)
        case "goodput": return s.goodput
        default: return Int(figure).map { Double(s.byStatus[$0] ?? 0) }
        }
    }

    static let latencies: Set<String> = ["p50", "p90", "p95", "p99", "p99.9", "max"]

    /// nil when it holds, else why not.
    func failure(_ stats: SeriesStats?, callbacks: (received: Int, expected: Int)) -> String? {
        guard let got = measured(stats, callbacks: callbacks) else {
            return Self.latencies.contains(figure) && stats != nil
                ? "\(text): no successes to measure" : "\(text): no such figure in this run"
        }
        // callbacks=all of no accepted job is not a success either.
        if value == nil && callbacks.expected == 0 { return "\(text): no job was accepted" }
        let want = value ?? Double(callbacks.expected)
        let holds: Bool
        switch op {
        case .lt: holds = got < want
        case .le: holds = got <= want
        case .gt: holds = got > want
        case .ge: holds = got >= want
        case .eq: holds = got == want
        }
        return holds ? nil : "\(text): measured \(got == got.rounded() ? String(Int(got)) : String(format: "%.2f", got))"
    }
}
