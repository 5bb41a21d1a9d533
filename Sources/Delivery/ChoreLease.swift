import Store

/// Whether this node holds a chore (`Chore`), by what the store last answered. Every node asks at each
/// heartbeat for the chore until `ask(now:)`, one node timeout ahead: the store grants it to the node that
/// holds it already, or to anyone once the holder's time has passed (a conditional write). The holder
/// believes it holds the chore until a margin before its grant runs out, so a node that stopped
/// heartbeating (and so stopped asking) has stopped doing the chore before another can take it, clocks
/// agreeing within the margin. Pure: the caller passes the time and the store's answers.
public struct ChoreLease: Sendable, Equatable {
    /// How long a grant lasts: the node timeout, so a dead holder's chore passes on about when its jobs are
    /// found dead.
    public let ttlMillis: Int64
    /// Believed held until this (the grant's end less the margin); 0: not held.
    public private(set) var heldUntil: UnixMillis = 0

    public init(ttlMillis: Int64) {
        self.ttlMillis = max(1, ttlMillis)
    }

    /// A quarter of the grant, at most a second: with the 2 s shortest node timeout a holder that asks every
    /// second never lapses, and a holder frozen for the margin does not overlap the next one.
    public var marginMillis: Int64 { min(1000, ttlMillis / 4) }

    /// The end of the grant to ask for at `now`.
    public func ask(now: UnixMillis) -> UnixMillis { now + ttlMillis }

    /// The store answered the ask made at `askedAt` (`taken` false also when it failed: a node that cannot
    /// reach the store does no chore). Returns true when this changed whether the chore is held.
    @discardableResult
    public mutating func answered(taken: Bool, askedAt: UnixMillis, now: UnixMillis) -> Bool {
        let before = holds(now: now)
        heldUntil = taken ? askedAt + ttlMillis - marginMillis : 0
        return before != holds(now: now)
    }

    /// Whether to do the chore now.
    public func holds(now: UnixMillis) -> Bool { now < heldUntil }
}
