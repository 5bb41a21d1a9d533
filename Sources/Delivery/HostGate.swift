import Store

/// Per-host admission for callbacks: at most `concurrency` attempts in flight to one host, and a circuit
/// breaker that opens after `threshold` consecutive failures, so a dead receiver costs one probe per
/// cooldown instead of a worker per job. Pure state; the caller supplies the time and keeps it in a lock.
/// A "host" here is the endpoint connected to (`CallbackTarget.endpoint`, address and port), never the
/// name in the URL: many names for one address would otherwise each get their own limit and breaker.
public struct HostGate: Sendable {
    public struct Options: Sendable, Equatable {
        public var concurrency: Int
        public var threshold: Int
        public var cooldownMillis: Int64
        /// Cooldowns double after each failed probe, up to this.
        public var maxCooldownMillis: Int64
        public init(concurrency: Int, threshold: Int, cooldownMillis: Int64, maxCooldownMillis: Int64 = 600_000) {
            self.concurrency = concurrency
            self.threshold = threshold
            self.cooldownMillis = cooldownMillis
            self.maxCooldownMillis = max(cooldownMillis, maxCooldownMillis)
        }
    }

    public enum Admission: Sendable, Equatable {
        case go
        /// The host has `concurrency` attempts in flight: wait for one of them to end.
        case busy
        /// Not now: look at the job again at this time. Costs the job no attempt.
        case later(until: Int64, reason: String)
    }

    struct Host: Sendable {
        var inFlight = 0
        var failures = 0
        var openUntil: Int64 = 0
        var probing = false
        var cooldown: Int64
    }

    public let options: Options
    private(set) var hosts: [String: Host] = [:]

    public init(options: Options) {
        self.options = options
    }

    private var tripped: (Host) -> Bool { { $0.failures >= options.threshold } }

    public mutating func admit(_ host: String, now: Int64) -> Admission {
        var h = hosts[host] ?? Host(cooldown: options.cooldownMillis)
        defer { hosts[host] = h }
        if h.openUntil > now {
            return .later(until: h.openUntil, reason: "circuit open after \(h.failures) consecutive failures")
        }
        if tripped(h) {
            // Half-open: one probe decides; everyone else waits for it.
            guard !h.probing else { return .later(until: now + 500, reason: "circuit half-open, probe in flight") }
            h.probing = true
            h.inFlight += 1
            return .go
        }
        guard h.inFlight < options.concurrency else { return .busy }
        h.inFlight += 1
        return .go
    }

    /// Whether `host` has as many attempts in flight as it may.
    public func isFull(_ host: String) -> Bool { (hosts[host]?.inFlight ?? 0) >= options.concurrency }

    /// Reports an admitted attempt's end. `healthy`: the host answered with something other than 5xx/429.
    public mutating func finish(_ host: String, healthy: Bool, now: Int64) {
        guard var h = hosts[host] else { return }
        h.inFlight = max(0, h.inFlight - 1)
        if healthy {
            h.failures = 0
            h.openUntil = 0
            h.cooldown = options.cooldownMillis
        } else {
            h.failures += 1
            if tripped(h) {
                if h.probing { h.cooldown = min(h.cooldown * 2, options.maxCooldownMillis) }
                h.openUntil = now + h.cooldown
            }
        }
        if h.probing { h.probing = false }
        // Forget idle, healthy hosts so the table stays as small as the set of troubled ones.
        if h.inFlight == 0 && h.failures == 0 { hosts[host] = nil } else { hosts[host] = h }
    }

    /// Hosts whose breaker is open or half-open, for the heartbeat (and so /healthz).
    public func circuits(now: Int64) -> [Circuit] {
        hosts.filter { tripped($0.value) }.sorted { $0.key < $1.key }.map { key, h in
            Circuit(host: key, state: h.openUntil > now ? .open : .halfOpen, consecutiveFailures: h.failures, retryAt: h.openUntil)
        }
    }

    /// Takes back the breakers a previous deliveryd published, so a restart does not forget a dead receiver:
    /// one still open stays shut until its time, one past it is half-open (its next attempt is the probe).
    /// What it had in flight ended with that process.
    public mutating func restore(_ circuits: [Circuit]) {
        for c in circuits where hosts[c.host] == nil && c.consecutiveFailures >= options.threshold {
            hosts[c.host] = Host(failures: c.consecutiveFailures, openUntil: c.retryAt, cooldown: options.cooldownMillis)
        }
    }
}
