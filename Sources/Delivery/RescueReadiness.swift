import Store

/// Whether this node may judge other nodes dead by their heartbeats (and so rescue their jobs). Another
/// node's old heartbeat proves its death only if the database took heartbeats all along: after an outage
/// every row is old, the live nodes' too, and a rescue then would take back jobs whose callbacks went out and
/// whose records waited for the database. So a node rescues only once its own heartbeats have succeeded
/// for a whole node timeout: by then every live node has beaten again. A failed heartbeat, or one that came
/// too long after the last (a call stuck while the database was away, a frozen process), starts the wait
/// again. Pure: the caller passes the time and the heartbeats' outcomes.
public struct RescueReadiness: Sendable, Equatable {
    public let nodeTimeoutMillis: Int64
    /// Since when every heartbeat succeeded, none more than `maxGapMillis` after the last; nil: the last failed.
    public private(set) var healthySince: UnixMillis?
    private var lastSuccess: UnixMillis?

    public init(nodeTimeoutMillis: Int64) {
        self.nodeTimeoutMillis = nodeTimeoutMillis
    }

    /// Heartbeats go each second: two seconds, or half the node timeout when longer, between two successes
    /// means the database (or this node) was away meanwhile.
    public var maxGapMillis: Int64 { max(2000, nodeTimeoutMillis / 2) }

    /// A heartbeat's outcome; `now` is when it returned (a call that hung until the database came back
    /// succeeds late).
    public mutating func heartbeat(succeeded: Bool, now: UnixMillis) {
        guard succeeded else { (healthySince, lastSuccess) = (nil, nil); return }
        if healthySince == nil || lastSuccess.map({ now - $0 > maxGapMillis }) ?? true { healthySince = now }
        lastSuccess = now
    }

    /// Whether a rescue at `now` may trust the nodes' heartbeats.
    public func mayRescue(now: UnixMillis) -> Bool {
        guard let since = healthySince else { return false }
        return now - since >= nodeTimeoutMillis
    }
}
