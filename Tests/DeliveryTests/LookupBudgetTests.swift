import CallbackPolicy
import Foundation
import Synchronization
import Testing

@testable import Delivery

@Suite struct LookupBudgetTests {
    @Test func boundsOneClientsThreadsAndLetsOthersThrough() {
        var budget = LookupBudget(options: .init(total: 4, perClient: 2, queuePerClient: 2))
        do { let r = budget.request(1, client: "a"); #expect(r == .start) }
        do { let r = budget.request(2, client: "a"); #expect(r == .start) }
        do { let r = budget.request(3, client: "a"); #expect(r == .queued, "a's third waits for one of a's threads") }
        do { let r = budget.request(4, client: "a"); #expect(r == .queued) }
        do { let r = budget.request(5, client: "a"); #expect(r == .refused(running: 2, waiting: 2), "a's queue is full") }
        do { let r = budget.request(6, client: "b"); #expect(r == .start, "b is not held up by a") }
        do { let r = budget.request(7, client: "b"); #expect(r == .start) }
        do { let r = budget.request(8, client: "c"); #expect(r == .queued, "all four threads are taken") }
        #expect(budget.threads == 4)
        // One of b's threads ends: c, the first waiter whose client has a thread free, takes it; not a.
        do { let r = budget.finish(client: "b"); #expect(r == 8) }
        // One of a's ends: a's first waiter takes it.
        do { let r = budget.finish(client: "a"); #expect(r == 3) }
        #expect(budget.threads == 4)
    }

    @Test func aWaiterPastItsDeadlineLeavesTheQueueButARunningLookupKeepsItsThread() {
        var budget = LookupBudget(options: .init(total: 1, perClient: 1))
        do { let r = budget.request(1, client: "a"); #expect(r == .start) }
        do { let r = budget.request(2, client: "a"); #expect(r == .queued) }
        do { let r = budget.withdraw(2); #expect(r, "it was waiting") }
        do { let r = budget.withdraw(1); #expect(!r, "it runs: getaddrinfo cannot be cancelled, its thread stays counted") }
        #expect(budget.threads == 1)
        do { let r = budget.request(3, client: "b"); #expect(r == .queued) }
        do { let r = budget.finish(client: "a"); #expect(r == 3) }
        do { let r = budget.finish(client: "b"); #expect(r == nil) }
        #expect(budget.threads == 0)
        do { let r = budget.finish(client: "b"); #expect(r == nil, "a finish without a start changes nothing") }
        #expect(budget.threads == 0)
    }

    @Test func aClientDoesNotOvertakeItsOwnWaiters() {
        var budget = LookupBudget(options: .init(total: 2, perClient: 2))
        do { let r = budget.request(1, client: "b"); #expect(r == .start) }
        do { let r = budget.request(2, client: "b"); #expect(r == .start) }
        do { let r = budget.request(3, client: "a"); #expect(r == .queued) }
        do { let r = budget.finish(client: "b"); #expect(r == 3) }
        do { let r = budget.request(4, client: "a"); #expect(r == .queued, "total is full again") }
        do { let r = budget.finish(client: "b"); #expect(r == 4) }
    }

    @Test func optionsAreSane() {
        let o = LookupBudget.Options(total: 4, perClient: 10)
        #expect(o.perClient == 4 && o.queuePerClient == 32)
        #expect(LookupBudget.Options(total: 0, perClient: 0).perClient == 1)
    }
}

/// The thread shell around the budget, with a lookup that blocks until released (no DNS).
@Suite(.timeLimit(.minutes(1))) struct NameResolverTests {
    final class Gate: Sendable {
        let release = DispatchSemaphore(value: 0)
        let started = Atomic<Int>(0)
    }

    @Test func aStuckLookupFailsAtItsDeadlineAndKeepsItsThreadUntilItReturns() async throws {
        let gate = Gate()
        let resolver = NameResolver(budget: .init(total: 8, perClient: 1, queuePerClient: 1), timeoutSeconds: 0.2) { host in
            gate.started.add(1, ordering: .relaxed)
            if host.hasPrefix("stall") { gate.release.wait() }
            return .success([IPAddress("93.184.216.34")!])
        }
        let results = Mutex<[String: (Result<[IPAddress], LookupFailure>, Double)]>([:])
        let t0 = Date()
        for host in ["stall1.example", "stall2.example", "stall3.example", "ok.example"] {
            let client = host.hasPrefix("stall") ? "slow" : "other"
            resolver.resolve(host, client: client) { r in results.withLock { $0[host] = (r, Date().timeIntervalSince(t0)) } }
        }
        // Waits for conditions, not for times: the machine may be busy.
        for _ in 0..<500 where results.withLock({ $0.count }) < 4 { try await Task.sleep(for: .milliseconds(20)) }
        let seen = results.withLock { $0 }
        #expect(seen.count == 4)
        // Another client's lookup is not held up by the stuck one: it is answered before the stuck one's deadline.
        #expect((try? seen["ok.example"]?.0.get()) == [IPAddress("93.184.216.34")!])
        #expect((seen["ok.example"]?.1 ?? 9) < (seen["stall1.example"]?.1 ?? 0))
        #expect(seen["stall1.example"]?.0 == .failure(LookupFailure("host stall1.example did not resolve within 200ms")))
        #expect(seen["stall2.example"]?.0 == .failure(LookupFailure("host stall2.example did not resolve within 200ms")), "waited, never ran")
        #expect(seen["stall3.example"]?.0 == .failure(LookupFailure("host stall3.example not looked up: this client has 1 lookups running and 1 waiting")))
        #expect(gate.started.load(ordering: .relaxed) == 2, "one stuck lookup of the slow client, one of the other")
        #expect(resolver.threads == 1, "the stuck lookup still holds its thread")
        gate.release.signal()
        for _ in 0..<500 where resolver.threads > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(resolver.threads == 0)
        #expect(results.withLock { $0.count } == 4, "each completion ran once")
    }

    @Test func systemLookupSeesLocalhostAsLoopback() throws {
        // /etc/hosts maps localhost to loopback: the strict policy must refuse it by address too.
        let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [1...65_535])
        let addresses = try NameResolver.system("localhost").get()
        #expect(!addresses.isEmpty && addresses.allSatisfy { !policy.permits($0) })
    }
}
