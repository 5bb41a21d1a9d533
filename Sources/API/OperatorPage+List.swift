import Store
import WorkEngine

/// The overview's request list beyond the newest page: why each request failed, a search by id, and paging.
extension OperatorPage {
    static let pageSize = 50

    static let searchForm =
        "<form method=get action=\"/ui\">request id <input name=id size=38 placeholder=\"01a2…\"> <button id=search>open</button></form>"

    /// Why a request failed (the work's error, else delivery's), cut to a line; "" when nothing failed.
    static func reason(_ r: RequestRecord) -> String {
        let text = r.deliveryError ?? r.error ?? ""
        return text.count > 120 ? String(text.prefix(119)) + "…" : text
    }

    /// "Older" when the page is full: the next page starts before its last id, with the same filters.
    static func nextPageLink(_ records: [RequestRecord], mode: RequestMode?, status: JobStatus?) -> String {
        guard records.count == pageSize, let last = records.last else { return "" }
        var query = "before=\(last.id)"
        if let mode { query += "&mode=\(mode.rawValue)" }
        if let status { query += "&status=\(status.rawValue)" }
        return "<p><a id=older href=\"/ui?\(query)\">older requests →</a></p>"
    }
}
