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

    /// The ids to take from `candidates` (the window's failed async jobs in id order, as a store reads them):
    /// the first `limit` that match, and whether more match. Both stores decide through this.
    public func take(_ candidates: some Sequence<(id: String, createdAt: UnixMillis, callbackURL: String?)>) -> BulkRedeliverResult {
        var ids: [String] = []
        for c in candidates where matches(createdAt: c.createdAt, callbackURL: c.callbackURL) {
            guard ids.count < limit else { return BulkRedeliverResult(requeued: ids, more: true) }
            ids.append(c.id)
        }
        return BulkRedeliverResult(requeued: ids, more: false)
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
