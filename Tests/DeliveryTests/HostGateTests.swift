import Testing

@testable import Delivery

@Suite struct HostGateTests {
    @Test func limitsConcurrencyPerHost() {
        var gate = HostGate(options: .init(concurrency: 2, threshold: 3, cooldownMillis: 1000))
        #expect(gate.admit("a:80", now: 0) == .go)
        #expect(gate.admit("a:80", now: 0) == .go)
        #expect(gate.admit("a:80", now: 0) == .busy, "the third waits")
        #expect(gate.admit("b:80", now: 0) == .go, "another host is not affected")
        gate.finish("a:80", healthy: true, now: 1)
        #expect(gate.admit("a:80", now: 2) == .go)
    }

    @Test func opensAfterConsecutiveFailuresThenProbes() {
        var gate = HostGate(options: .init(concurrency: 10, threshold: 3, cooldownMillis: 1000))
        for t in 0..<3 {
            #expect(gate.admit("h:443", now: Int64(t)) == .go)
            gate.finish("h:443", healthy: false, now: Int64(t))
        }
        // Open until 2 + 1000.
        #expect(gate.admit("h:443", now: 500) == .later(until: 1002, reason: "circuit open after 3 consecutive failures"))
        #expect(gate.circuits(now: 500).map(\.state) == [.open])
        // Half-open: one probe, the rest wait.
        #expect(gate.admit("h:443", now: 1002) == .go)
        if case .go = gate.admit("h:443", now: 1003) { Issue.record("only one probe at a time") }
        #expect(gate.circuits(now: 1003).map(\.state) == [.halfOpen])
        // A failed probe reopens with a doubled cooldown.
        gate.finish("h:443", healthy: false, now: 1100)
        #expect(gate.admit("h:443", now: 1200) == .later(until: 3100, reason: "circuit open after 4 consecutive failures"))
        // A successful probe closes it and forgets the host.
        #expect(gate.admit("h:443", now: 3100) == .go)
        gate.finish("h:443", healthy: true, now: 3101)
        #expect(gate.circuits(now: 3101).isEmpty)
        #expect(gate.hosts.isEmpty)
    }

    @Test func aSuccessResetsTheFailureCount() {
        var gate = HostGate(options: .init(concurrency: 10, threshold: 2, cooldownMillis: 1000))
        _ = gate.admit("h", now: 0)
        gate.finish("h", healthy: false, now: 0)
        _ = gate.admit("h", now: 1)
        gate.finish("h", healthy: true, now: 1)
        _ = gate.admit("h", now: 2)
        gate.finish("h", healthy: false, now: 2)
        #expect(gate.admit("h", now: 3) == .go, "one failure after a success does not open the circuit")
    }
}
