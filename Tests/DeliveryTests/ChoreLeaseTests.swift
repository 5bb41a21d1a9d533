import Store
import Testing

@testable import Delivery

/// The chore lease as its holder reckons it, from the store's answers alone.
@Suite struct ChoreLeaseTests {
    let t: UnixMillis = 1_000_000

    @Test func aGrantIsBelievedUntilAMarginBeforeItsEnd() {
        var lease = ChoreLease(ttlMillis: 10_000)
        #expect(!lease.holds(now: t), "not held before the store said so")
        #expect(lease.ask(now: t) == t + 10_000)
        let took = lease.answered(taken: true, askedAt: t, now: t + 5)
        #expect(took, "taking it is a change")
        #expect(lease.holds(now: t + 8_999) && !lease.holds(now: t + 9_000), "a second's margin before the grant's end")
        let renewed = lease.answered(taken: true, askedAt: t + 1_000, now: t + 1_000)
        #expect(!renewed, "a renewal is no change")
        #expect(lease.holds(now: t + 9_999))
    }

    @Test func aRefusalOrAFailedAskDropsIt() {
        var lease = ChoreLease(ttlMillis: 10_000)
        lease.answered(taken: true, askedAt: t, now: t)
        let lost = lease.answered(taken: false, askedAt: t + 1_000, now: t + 1_000)
        #expect(lost, "another node holds it now")
        #expect(!lease.holds(now: t + 1_000))
    }

    /// The shortest node timeout (2 s) asked every second: held without a gap, and the margin (a quarter)
    /// still leaves the holder done before another node may take it.
    @Test func theShortestTimeoutIsHeldWithoutAGap() {
        var lease = ChoreLease(ttlMillis: 2_000)
        #expect(lease.marginMillis == 500)
        for second in 0..<5 {
            let at = t + UnixMillis(second) * 1_000
            lease.answered(taken: true, askedAt: at, now: at)
            #expect(lease.holds(now: at) && lease.holds(now: at + 999))
        }
        #expect(!lease.holds(now: t + 4_000 + 1_500), "a holder that stopped asking stops before its grant ends")
    }
}
