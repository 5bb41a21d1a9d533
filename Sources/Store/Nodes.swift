/// One deliveryd node's row (table `nodes`): who it is, its last heartbeat, and what it published with it.
/// Each start is a new row with a new `id` (the owner of the leases it takes); `name` (WORKFCGI_NODE_NAME)
/// stays across restarts, so a restarted node finds its circuit breakers under it.
public struct NodeStatus: Sendable, Equatable {
    /// This start's id (a UUID): the `lease_owner` of every job it claims.
    public var id: String
    public var name: String
    public var pid: Int
    public var startedAt: UnixMillis
    public var heartbeatAt: UnixMillis
    /// Set by a clean stop (its leases were given back then).
    public var stoppedAt: UnixMillis?
    /// Jobs being worked on: computing, looking up their callback host, or with an attempt in flight.
    public var activeWorkers: Int
    /// Open or half-open circuit breakers, as the node last reported them.
    public var circuits: [Circuit]
    /// The node's counters since it started.
    public var stats: DeliveryStats

    public init(
        id: String, name: String, pid: Int, startedAt: UnixMillis, heartbeatAt: UnixMillis, stoppedAt: UnixMillis? = nil,
        activeWorkers: Int = 0, circuits: [Circuit] = [], stats: DeliveryStats = DeliveryStats()
    ) {
        (self.id, self.name, self.pid, self.startedAt, self.heartbeatAt, self.stoppedAt) = (id, name, pid, startedAt, heartbeatAt, stoppedAt)
        (self.activeWorkers, self.circuits, self.stats) = (activeWorkers, circuits, stats)
    }

    public enum Liveness: String, Sendable, CaseIterable {
        /// Heartbeating: its heartbeat is younger than the node timeout.
        case alive
        /// Stopped cleanly.
        case stopped
        /// Not stopped, and no heartbeat for the node timeout or longer (killed, frozen, cut off): its leases
        /// are rescued.
        case dead
    }

    /// The one liveness rule (WORKFCGI_NODE_TIMEOUT), for /healthz, /metrics, /ui and the rescuer alike; the
    /// stores' rescue spells the same rule in SQL (`aliveSQL`).
    public func liveness(now: UnixMillis, timeoutMillis: Int64) -> Liveness {
        if stoppedAt != nil { return .stopped }
        return now - heartbeatAt < timeoutMillis ? .alive : .dead
    }

    /// `liveness == .alive` as a condition on `nodes`, with the now and the timeout bound as `now`, `timeout`.
    static func aliveSQL(now: String, timeout: String) -> String {
        "stopped_at IS NULL AND heartbeat_at > \(now) - \(timeout)"
    }
}

/// Work one node at a time does for all of them, each under its own row of `chores` (name, node, until):
/// the node whose id is in the row holds the chore until `until`, and another takes it only after that.
public enum Chore: String, Sendable, CaseIterable {
    /// Making the jobs of dead nodes due again at once.
    case rescue
    /// Deleting finished requests past WORKFCGI_RETENTION, and nodes' rows long stopped or dead.
    case retention
}

/// Jobs the rescuer took back from one dead node (or from an owner with no row at all: `name` nil).
public struct Rescue: Sendable, Equatable {
    public var owner: String
    public var name: String?
    public var jobs: Int
    public init(owner: String, name: String?, jobs: Int) { (self.owner, self.name, self.jobs) = (owner, name, jobs) }
}

/// What a heartbeat did with the leases it was asked to renew.
public struct LeaseRenewal: Sendable, Equatable {
    /// Renewed until the heartbeat's `now + leaseMillis`.
    public var renewed: [String]
    /// No longer the node's: another node claimed them (after this one was found dead, or its lease ran out),
    /// or their row is gone. Whatever the node still writes about them changes nothing. Neither renewed nor
    /// lost: a row locked at that moment (PostgreSQL skips it), or a lease run out that nobody took yet.
    public var lost: [String]
    public init(renewed: [String] = [], lost: [String] = []) { (self.renewed, self.lost) = (renewed, lost) }
}
