import Testing

@testable import API

/// The 100 ms snapshots behind /healthz, driven with explicit times.
@Suite struct RecentTests {
    @Test func keepsForMaxAgeThenComputesAgain() {
        let recent = Recent<Int>(maxAge: 100)
        var computed = 0
        func at(_ now: UInt64) -> Int { recent.value(now: now) { computed += 1; return computed } }
        #expect(at(1_000) == 1)
        #expect(at(1_099) == 1)
        #expect(at(1_100) == 2)
        recent.invalidate()
        #expect(at(1_101) == 3)
    }

    /// A thread that read the clock before another stored a newer value: its `now` is earlier than the
    /// value's time. That is fresh, not a negative age (the subtraction this replaces trapped right there).
    @Test func aClockReadBeforeTheStoreCountsAsFresh() {
        let recent = Recent<String>(maxAge: 100_000_000)
        #expect(recent.value(now: 5_000_000_000) { "newer" } == "newer")
        #expect(recent.value(now: 4_999_999_000) { "recomputed" } == "newer")
    }
}
