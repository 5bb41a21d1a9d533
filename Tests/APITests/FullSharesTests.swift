import Testing

@testable import API

struct FullSharesTests {
    @Test func aRefusedClientIsSuspectForAMinute() {
        var shares = FullShares()
        #expect(!shares.suspects("a", now: 1_000), "no one is suspect until refused")
        shares.refused("a", now: 1_000)
        #expect(shares.suspects("a", now: 1_000 + FullShares.memoryMillis - 1))
        #expect(!shares.suspects("a", now: 1_000 + FullShares.memoryMillis), "a minute later the write-time check decides")
        #expect(!shares.suspects("b", now: 1_000))
        shares.admitted("a")
        #expect(!shares.suspects("a", now: 1_001))
    }

    @Test func manyAddressesCannotGrowIt() {
        var shares = FullShares()
        for i in 0..<(FullShares.capacity * 3) { shares.refused("10.0.\(i / 256).\(i % 256)", now: 5_000) }
        let suspects = (0..<(FullShares.capacity * 3)).filter { shares.suspects("10.0.\($0 / 256).\($0 % 256)", now: 5_000) }.count
        #expect(suspects > 0 && suspects <= FullShares.capacity)
        shares.refused("late", now: 5_000)
        #expect(shares.suspects("late", now: 5_001), "the newest refusal is always kept")
    }
}
