import Foundation
import Harness
import Synchronization
import Testing

/// Nothing acknowledged is lost: a storm of async jobs while deliveryd is killed with SIGKILL twice and
/// workfcgi once, each restarted at once. Every job that got a 202 must reach the receiver.
@Suite(.serialized, .timeLimit(.minutes(4))) struct DurabilityTests {
    @Test func killNineDuringAStormLosesNoAcknowledgedJob() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver(
            settings: ["WORKFCGI_LEASE": "3s", "WORKFCGI_CALLBACK_TIMEOUT": "1s", "WORKFCGI_BACKLOG_LIMIT": "1000000",
                       "WORKFCGI_DURABILITY": "full"],
            rate: "100000r/s", burst: 100_000)

        let total = 2000
        let next = Atomic<Int>(0)
        let acked = Mutex<Set<String>>([])
        let refused = Atomic<Int>(0)
        let stormDone = DispatchGroup()
        for _ in 0..<8 {
            stormDone.enter()
            Thread {
                let client = HTTPClient(timeoutSeconds: 10)
                while true {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < total else { break }
                    let body = #"{"text": "job \#(i)", "callback_url": "http://127.0.0.1:\#(port)/ok/storm"}"#
                    // Like a real client: retry while workfcgi is down (nginx answers 503), up to a second.
                    var id: String?
                    for _ in 0..<50 {
                        if let r = try? client.postJSON(stack.baseURL + "/async", body), r.status == 202 {
                            id = r.json?["request_id"] as? String
                            break
                        }
                        usleep(20_000)
                    }
                    if let id { acked.withLock { _ = $0.insert(id) } } else { refused.add(1, ordering: .relaxed) }
                }
                stormDone.leave()
            }.start()
        }

        func whenAcked(_ n: Int) async {
            while acked.withLock({ $0.count }) < n && next.load(ordering: .relaxed) < total {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        await whenAcked(400)
        stack.crash(.deliveryd)
        try stack.launch(.deliveryd)
        await whenAcked(900)
        stack.crash(.workfcgi)
        try stack.launch(.workfcgi)
        await whenAcked(1400)
        stack.crash(.deliveryd)
        try stack.launch(.deliveryd)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in stormDone.notify(queue: .global()) { c.resume() } }

        let acknowledged = acked.withLock { $0 }
        await receiver.wait(timeout: 120) { calls in
            Set(calls.filter { $0.answered == 200 }.map(\.webhookID)).isSuperset(of: acknowledged)
        }
        let calls = receiver.delivered
        let delivered = Set(calls.map(\.webhookID))
        let missing = acknowledged.subtracting(delivered)
        print(
            "durability: \(total) sent, \(acknowledged.count) acknowledged (202), \(refused.load(ordering: .relaxed)) not acknowledged, "
                + "\(delivered.intersection(acknowledged).count) of them delivered, \(missing.count) missing, "
                + "\(calls.count - delivered.count) duplicate deliveries, \(delivered.subtracting(acknowledged).count) delivered without a 202 seen")
        #expect(acknowledged.count > total / 2, "the storm must mostly succeed for the test to mean something")
        #expect(missing.isEmpty, "acknowledged but never delivered: \(missing.prefix(5))")
        await receiver.stop()
    }
}
