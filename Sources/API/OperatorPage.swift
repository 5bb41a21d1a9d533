import Digest
import FastCGI
import Foundation
import JSON
import Store
import WorkEngine

/// /ui: the operator page, server-rendered (no scripts, no external assets, no build step). The overview
/// refreshes itself every 5 s; a request's page shows its input, result and delivery trace, with a
/// redeliver button. The button's form carries a token bound to the request and to this process (HMAC
/// with a key made at start), and a cross-site Origin is refused, so another site cannot make an
/// operator's browser redeliver. nginx admits /ui from nginx/operators.conf's addresses only.
struct OperatorPage: Sendable {
    private let key = Digest.randomBytes(32)

    static let headers: [(name: String, value: String)] = [
        ("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
    ]

    func token(for id: String) -> String {
        Digest.hex(Digest.hmacSHA256(key: key, message: Array("redeliver \(id)".utf8)))
    }

    func accepts(token: String?, for id: String) -> Bool {
        guard let token else { return false }
        return Digest.constantTimeEqual(Array(token.utf8), Array(self.token(for: id).utf8))
    }

    private static func page(_ title: String, refresh: Bool = false, _ body: String) -> HTTPResponse {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(HTML.escape(title)) · workfcgi</title>
            \(refresh ? "<meta http-equiv=\"refresh\" content=\"5\">" : "")
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style>body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse}
            td,th{border-bottom:1px solid #e4e4e4;padding:.3rem .6rem;text-align:left;vertical-align:top}
            .cards{display:flex;gap:.75rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
            .card b{display:block;font-size:1.5rem}.ok{color:#075}.bad{color:#b00}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;max-width:70rem}
            code,pre{font:12px ui-monospace,monospace}a{color:#04c}form.inline{display:inline}
            figure{margin:.5rem 0 1rem}figcaption{font-weight:600;margin-bottom:.2rem}svg{max-width:100%;height:auto}</style></head><body>
            <p><a href="/ui">workfcgi operator page</a> · <a href="/docs">API</a> · <a href="/metrics">metrics</a></p>
            \(body)</body></html>

            """
        return HTTPResponse(status: 200, headers: headers, body: Array(html.utf8))
    }

    private static func card(_ label: String, _ value: String, good: Bool? = nil) -> String {
        let cls = good.map { $0 ? " class=ok" : " class=bad" } ?? ""
        return "<div class=card><b\(cls)>\(HTML.escape(value))</b>\(HTML.escape(label))</div>"
    }

    private static func mib(_ bytes: Double) -> String { String(format: "%.1f MiB", bytes / 1_048_576) }

    private static func number(_ v: JSONValue?) -> String {
        v?.intValue.map(String.init) ?? v?.doubleValue.map { String($0) } ?? "–"
    }

    func overview(
        health: [String: JSONValue], records: [RequestRecord], mode: RequestMode?, status: JobStatus?,
        recovered: (count: Int, more: Bool)? = nil, handlers: HandlersView? = nil, now: NowView? = nil, history: HistoryView? = nil
    ) -> HTTPResponse {
        let deliveryd = health["deliveryd"]
        let running = deliveryd?["running"] == true
        // nil: unknown (deliveryd is not running to say), which is not "none open".
        var circuits: [Circuit]?
        if case .array(let list)? = deliveryd?["circuits"] { circuits = list.compactMap(Circuit.init(json:)) }
        var body = "<h1>workfcgi</h1><div class=cards>"
        body += Self.card("status", health["status"]?.stringValue ?? "?", good: health["status"] == "ok")
        body += Self.card("async backlog (pending + processing)", Self.number(health["queue_depth"]))
        body += Self.card("sync slots in use", "\(Self.number(health["sync_in_flight"])) / \(Self.number(health["sync_concurrency"]))")
        body += Self.card("deliveryd", running ? "running" : "down", good: running)
        body += Self.card("deliveryd jobs in hand", running ? Self.number(health["active_workers"]) : "–")
        body += Self.card("open circuits", circuits.map { String($0.count) } ?? "unknown (deliveryd down)", good: circuits.map(\.isEmpty))
        if let storage = health["storage"], let used = storage["used_bytes"]?.doubleValue {
            // Used plus reserved (for accepted jobs' results) against WORKFCGI_MAX_DB_SIZE.
            let taken = used + (storage["reserved_bytes"]?.doubleValue ?? 0)
            let share = storage["bound_bytes"]?.doubleValue.map { " of \(Self.mib($0)) (\(Int(taken / max(1, $0) * 100))%)" } ?? ""
            let state = storage["state"]?.stringValue ?? "?"
            body += Self.card("storage: \(state.replacingOccurrences(of: "_", with: " "))", Self.mib(taken) + share, good: state == "ok")
        }
        body += "</div>"
        if let circuits, !circuits.isEmpty {
            body += "<h2>Open circuits</h2><table><tr><th>host</th><th>state</th><th>failures</th><th>retry at</th></tr>"
            for c in circuits {
                body += "<tr><td>\(HTML.escape(c.host))</td><td>\(c.state.rawValue)</td>"
                body += "<td>\(c.consecutiveFailures)</td><td>\(Timestamp.iso8601(millis: c.retryAt))</td></tr>"
            }
            body += "</table>"
        }
        if let now { body += Self.nowSection(now) }
        if let history { body += Self.historySection(history) }
        body += Self.handlersSection(handlers)
        body += recoverySection(recovered)
        body += "<h2>Recent requests</h2><form method=get action=\"/ui\">mode <select name=mode><option value=\"\">any</option>"
        for m in ["sync", "async"] { body += "<option\(mode?.rawValue == m ? " selected" : "")>\(m)</option>" }
        body += "</select> status <select name=status><option value=\"\">any</option>"
        for s in JobStatus.allCases { body += "<option\(status == s ? " selected" : "")>\(s.rawValue)</option>" }
        body += "</select> <button>filter</button></form>"
        body += Self.searchForm
        body += "<table><tr><th>request</th><th>mode</th><th>op</th><th>status</th><th>attempts</th><th>created</th><th>ms</th><th>reason</th></tr>"
        for r in records {
            body += "<tr><td><a href=\"/ui/requests/\(r.id)\"><code>\(r.id)</code></a></td><td>\(r.mode.rawValue)</td><td>\(r.op.rawValue)</td>"
            body += "<td>\(r.status.rawValue)</td><td>\(r.attempts)</td><td>\(Timestamp.iso8601(millis: r.createdAt))</td>"
            body += "<td>\(r.durationMs.map { String(format: "%.1f", $0) } ?? "–")</td><td class=reason>\(HTML.escape(Self.reason(r)))</td></tr>"
        }
        if records.isEmpty { body += "<tr><td colspan=8>none</td></tr>" }
        body += "</table>"
        body += Self.nextPageLink(records, mode: mode, status: status)
        body += "<p><small>refreshes every 5 s</small></p>"
        return Self.page("overview", refresh: true, body)
    }

    func detail(_ r: RequestRecord, notice: String?) -> HTTPResponse {
        var body = "<h1>Request <code>\(r.id)</code></h1>"
        if let notice { body += "<p class=ok><b>\(HTML.escape(notice))</b></p>" }
        body += "<table><tr><th>mode</th><td>\(r.mode.rawValue)</td></tr><tr><th>op</th><td>\(r.op.rawValue)</td></tr>"
        body += "<tr><th>status</th><td>\(r.status.rawValue)</td></tr><tr><th>created</th><td>\(Timestamp.iso8601(millis: r.createdAt))</td></tr>"
        if let url = r.callbackURL { body += "<tr><th>callback_url</th><td><code>\(HTML.escape(url))</code></td></tr>" }
        if let e = r.error { body += "<tr><th>error</th><td>\(HTML.escape(e))</td></tr>" }
        if let e = r.deliveryError { body += "<tr><th>delivery error</th><td>\(HTML.escape(e))</td></tr>" }
        body += "</table><h2>Input</h2><pre>\(HTML.escape(r.input.text))</pre>"
        body += "<h2>Result</h2><pre>\(HTML.escape(r.result?.text ?? "–"))</pre>"
        if r.mode == .async {
            body += "<h2>Delivery trace</h2><table id=trace><tr><th>#</th><th>at</th><th>HTTP</th><th>ms</th><th>error</th><th>next attempt</th></tr>"
            for a in r.trace {
                body += "<tr><td>\(a.n)</td><td>\(Timestamp.iso8601(millis: a.at))</td><td>\(a.httpStatus.map(String.init) ?? "–")</td>"
                body += "<td>\(String(format: "%.1f", a.durationMs))</td><td>\(HTML.escape(a.error ?? ""))</td>"
                body += "<td>\(a.nextAttemptAt.map { Timestamp.iso8601(millis: $0) } ?? "")</td></tr>"
            }
            if r.trace.isEmpty { body += "<tr><td colspan=6>no attempt yet</td></tr>" }
            body += "</table>"
            if r.status == .completed || r.status == .failed {
                body += "<form method=post action=\"/ui/requests/\(r.id)/redeliver\"><input type=hidden name=token value=\"\(token(for: r.id))\">"
                body += "<p><button id=redeliver>Redeliver the callback</button> (a fresh attempt series, the same webhook-id)</p></form>"
            }
        }
        return Self.page("request \(r.id)", body)
    }
}

/// HTML escaping for the server-rendered pages. By Unicode scalar, never by Character: a grapheme cluster
/// such as U+0600 followed by `<` is one Character that is not equal to "<", and an escape that walked
/// Characters wrote that `<` out raw (stored markup on /ui from any /async client; HTMLEscapeTests).
enum HTML {
    static func escape(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out.append(contentsOf: "&amp;".unicodeScalars)
            case "<": out.append(contentsOf: "&lt;".unicodeScalars)
            case ">": out.append(contentsOf: "&gt;".unicodeScalars)
            case "\"": out.append(contentsOf: "&quot;".unicodeScalars)
            case "'": out.append(contentsOf: "&#39;".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}
