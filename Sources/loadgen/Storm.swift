import Foundation
import Harness
import Synchronization

/// One request's outcome in a storm.
struct Sample: Sendable {
    var status: Int  // 0 = transport error
    var micros: UInt64
    var sentAt: Date
    var requestID: String?
}

/// Fires `count` POSTs at `url` from `concurrency` threads, each with its own kept-alive connection.
enum Storm {
    static func run(url: String, body: String, count: Int, concurrency: Int, timeout: Double) async -> (samples: [Sample], seconds: Double) {
        let next = Atomic<Int>(0)
        let results = Mutex<[Sample]>([])
        let group = DispatchGroup()
        let started = Date()
        for _ in 0..<min(concurrency, count) {
            group.enter()
            Thread {
                let client = HTTPClient(timeoutSeconds: timeout)
                var mine: [Sample] = []
                while next.add(1, ordering: .relaxed).oldValue < count {
                    let sentAt = Date()
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    var sample = Sample(status: 0, micros: 0, sentAt: sentAt, requestID: nil)
                    if let response = try? client.postJSON(url, body) {
                        sample.status = response.status
                        sample.requestID = response.json?["request_id"] as? String
                    }
                    sample.micros = (DispatchTime.now().uptimeNanoseconds - t0) / 1000
                    mine.append(sample)
                }
                results.withLock { $0.append(contentsOf: mine) }
                group.leave()
            }.start()
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            group.notify(queue: .global()) { done.resume() }
        }
        return (results.withLock { $0 }, Date().timeIntervalSince(started))
    }
}
