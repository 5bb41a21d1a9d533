import Store

/// The overview's bulk recovery: redeliver every failed callback of a recent window, optionally one host's
/// (POST /ui/redeliver, the same bounded, idempotent step as POST /requests/redeliver).
extension OperatorPage {
    /// What the bulk form's token is bound to: not a request id, so no request's token can stand for it.
    static let bulkTokenSubject = "failed"

    static let recoveryWindows: [(label: String, seconds: Int64)] = [
        ("15 minutes", 900), ("hour", 3600), ("6 hours", 21_600), ("24 hours", 86_400), ("7 days", 604_800),
    ]

    func recoverySection(_ recovered: (count: Int, more: Bool)?) -> String {
        var html = "<h2>Recover failed callbacks</h2>"
        if let recovered {
            html += "<p class=ok id=recovered><b>\(recovered.count) failed callback\(recovered.count == 1 ? "" : "s") queued again"
            html += recovered.more ? "; more remain: press again for the next \(BulkRedeliver.maxLimit)" : ""
            html += ".</b></p>"
        }
        html += "<form method=post action=\"/ui/redeliver\"><input type=hidden name=token value=\"\(token(for: Self.bulkTokenSubject))\">"
        html += "Redeliver every failed callback of jobs created in the last <select name=window>"
        for w in Self.recoveryWindows { html += "<option value=\(w.seconds)\(w.seconds == 3600 ? " selected" : "")>\(w.label)</option>" }
        html += "</select> to host <input name=host placeholder=\"any host\" size=24> "
        html += "<button id=redeliver-failed>Redeliver failed</button> "
        html += "<small>(at most \(BulkRedeliver.maxLimit) a press, oldest first; each a fresh attempt series, the same webhook-id)</small></form>"
        return html
    }
}
