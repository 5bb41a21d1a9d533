/// When each request of a series goes out. Closed loop: `concurrency` requests in flight, the next one as
/// soon as one ends (what a pool of blocking clients does; a stalled server slows the sender down and hides
/// its stall). Open loop: request n is due at n / rate seconds whatever the server does, and its latency is
/// counted from that intended time (wrk2's correction for coordinated omission), so a stall shows in full.
enum Pacing: Sendable, Equatable {
    case closed(concurrency: Int)
    case open(rate: Double)

    /// Nanoseconds after the start at which request `n` (0-based) is due; nil in a closed loop (due at once).
    func intended(_ n: Int) -> UInt64? {
        guard case .open(let rate) = self else { return nil }
        return UInt64((Double(n) / rate * 1e9).rounded())
    }

    /// How many more requests may go out at `now` (ns after the start), `issued` having gone out and
    /// `inFlight` of them not answered. An open loop also caps what is in flight (`maxInFlight`): past it the
    /// sender falls behind, and the correction still counts from the intended times.
    func due(issued: Int, inFlight: Int, now: UInt64, maxInFlight: Int = 20_000) -> Int {
        switch self {
        case .closed(let concurrency):
            return max(0, concurrency - inFlight)
        case .open(let rate):
            let dueByNow = Int((Double(now) / 1e9 * rate).rounded(.down)) + 1
            return max(0, min(dueByNow - issued, maxInFlight - inFlight))
        }
    }

    /// Latency as reported: from the intended time in an open loop, from the actual send otherwise.
    func latency(n: Int, sent: UInt64, done: UInt64) -> UInt64 {
        let from = intended(n).map { min($0, sent) } ?? sent
        return done >= from ? done - from : 0
    }
}
