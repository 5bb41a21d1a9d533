import Foundation
import Handlers
import WorkEngine

/// /ui's handlers panel: what WORKFCGI_HANDLERS_DIR serves and refuses, and each handler's runs by mode
/// (this workfcgi's /sync runs, deliveryd's /async ones from its last heartbeat).
extension OperatorPage {
    struct HandlersView: Sendable {
        var folder: String
        var listing: HandlerRegistry.Scan
        var refusedFolder: String?
        var tally: HandlerTally
    }

    static func handlersSection(_ view: HandlersView?) -> String {
        guard let view else { return "" }
        var body = "<h2 id=handlers>Handlers</h2><p>folder <code>\(HTML.escape(view.folder))</code>"
        if let why = view.refusedFolder {
            body += ": <b class=bad>refused, no handler is served</b> (\(HTML.escape(why)))"
        }
        body += "</p><table><tr><th>handler</th><th>mode</th><th>runs</th><th>failures</th><th>timeouts (harakiri)</th>"
        body += "<th>mean</th><th>p50 ≤</th><th>p99 ≤</th></tr>"
        // Every installed handler has a row, run or not; one run but since removed keeps its counts.
        var rows = view.tally.counts
        for name in view.listing.handlers.keys where !rows.keys.contains(where: { $0.handler == name }) {
            rows[HandlerTally.Key(handler: name, mode: .sync)] = HandlerTally.Counts()
        }
        for (key, c) in rows.sorted(by: { $0.key < $1.key }) {
            let installed = view.listing.handlers[key.handler] != nil
            body += "<tr><td><code>\(key.handler)</code>\(installed ? "" : " (not installed now)")</td>"
            body += "<td>\(c.runs == 0 ? "–" : key.mode.rawValue)</td><td>\(c.runs)</td>"
            body += "<td\(c.failures > 0 ? " class=bad" : "")>\(c.failures)</td><td\(c.timeouts > 0 ? " class=bad" : "")>\(c.timeouts)</td>"
            body += "<td>\(c.runs == 0 ? "–" : seconds(c.seconds / Double(c.runs)))</td>"
            body += "<td>\(c.quantile(0.5).map(seconds) ?? "–")</td><td>\(c.quantile(0.99).map(seconds) ?? "–")</td></tr>"
        }
        if rows.isEmpty { body += "<tr><td colspan=8>no handler installed</td></tr>" }
        body += "</table>"
        if !view.listing.skipped.isEmpty {
            body += "<h3>Files not served</h3><table><tr><th>file</th><th>why</th></tr>"
            for skip in view.listing.skipped.sorted(by: { $0.name < $1.name }) {
                body += "<tr><td><code>\(HTML.escape(skip.name))</code></td>"
                body += "<td\(skip.refused ? " class=bad" : "")>\(skip.refused ? "refused: " : "ignored: ")\(HTML.escape(skip.reason))</td></tr>"
            }
            body += "</table>"
        }
        return body
    }

    private static func seconds(_ s: Double) -> String {
        if s == .infinity { return "&gt; 300 s" }
        return s < 1 ? String(format: "%.1f ms", s * 1000) : String(format: "%.2f s", s)
    }
}
