/// Which failed jobs a bulk redelivery takes (Svix's "recover since"): async jobs that failed, created in
/// `window` (unix ms, the start included, the end not), and, when `host` is set, whose callback URL names
/// that host. At most `limit` of them, oldest first, in one call: a window of a million failures is taken a
/// bounded bite at a time, and `more` says to call again. Calling again is safe: a job it requeued is no
/// longer `failed`, so it is never taken twice while its fresh series runs.
public struct BulkRedeliver: Sendable, Equatable {
    /// The most one call may requeue (the API's `limit` maximum).
    public static let maxLimit = 1000

    public var window: Range<UnixMillis>
    /// A host name as `CallbackHost.name(of:)` gives it: lower case, no port, no brackets.
    public var host: String?
    public var limit: Int

    public init(window: Range<UnixMillis>, host: String?, limit: Int) {
        self.window = window
        self.host = host.map { CallbackHost.normalized($0) }
        self.limit = min(max(limit, 1), Self.maxLimit)
    }

    /// Whether a failed job created at `createdAt` with this callback URL is one to take.
    public func matches(createdAt: UnixMillis, callbackURL: String?) -> Bool {
        guard window.contains(createdAt) else { return false }
        guard let host else { return true }
        return callbackURL.flatMap(CallbackHost.name(of:)) == host
    }

    public typealias Candidate = (id: String, createdAt: UnixMillis, callbackURL: String?)

    /// Rows a store reads a page at a time; its SQL narrows by status, mode and window, and by
    /// `likePattern` when a host is set.
    public static let pageSize = 500

    /// A superset filter for the SQL (`lower(callback_url) LIKE ?`): every URL naming the host contains it
    /// in lower case. Matching stays exact in `matches`; this only spares reading rows that cannot match.
    /// (`_` in a host is LIKE's one-character wildcard: a wider superset, still exact after.)
    public var likePattern: String? { host.map { "%" + $0 + "%" } }

    /// The ids to take: the first `limit` candidates that match, and whether more match. `page(after, n)`
    /// reads up to n of the window's failed async jobs with an id after `after` ("" first), in id order
    /// (UUIDv7: creation order). Reading stops at the first match past `limit`, so a call reads about
    /// `limit` rows, never the whole window (a window of 300,000 failures held SQLite's write lock for 2.6 s
    /// when every row was read). Both stores decide through this.
    public func take(page: (_ after: String, _ count: Int) throws -> [Candidate]) rethrows -> BulkRedeliverResult {
        var ids: [String] = []
        var after = ""
        while true {
            let rows = try page(after, Self.pageSize)
            for c in rows where matches(createdAt: c.createdAt, callbackURL: c.callbackURL) {
                guard ids.count < limit else { return BulkRedeliverResult(requeued: ids, more: true) }
                ids.append(c.id)
            }
            guard rows.count == Self.pageSize, let last = rows.last else { return BulkRedeliverResult(requeued: ids, more: false) }
            after = last.id
        }
    }
}

/// What a bulk redelivery did.
public struct BulkRedeliverResult: Sendable, Equatable {
    /// The jobs queued again, oldest first; each has a fresh attempt series and its webhook-id.
    public var requeued: [String]
    /// More failed jobs match: call again to take the next bite.
    public var more: Bool

    public init(requeued: [String], more: Bool) {
        self.requeued = requeued
        self.more = more
    }
}

/// The host a callback URL names, as an operator types it: for matching, not for connecting (the URL policy
/// decides where a callback goes). The URL was checked when the job was accepted.
public enum CallbackHost {
    /// `https://User@Hooks.Example.com.:8443/x` → `hooks.example.com`; `http://[::1]:80/` → `::1`.
    public static func name(of url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        var authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let host: Substring
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
        } else {
            host = authority.prefix { $0 != ":" }
        }
        let name = normalized(String(host))
        return name.isEmpty ? nil : name
    }

    /// Lower case, without brackets or a trailing dot.
    public static func normalized(_ host: String) -> String {
        var h = Substring(host.lowercased())
        if h.first == "[" && h.last == "]" { h = h.dropFirst().dropLast() }
        if h.last == "." { h = h.dropLast() }
        return String(h)
    }
}
