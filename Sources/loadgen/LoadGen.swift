import ArgumentParser
import Foundation
import Harness

/// Fires a sync storm and an async storm of the same work at workfcgi (through nginx), receives the
/// async callbacks itself, and prints p50/p95/p99/max of sync latency, async ack and time-to-callback.
@main
struct LoadGen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen", abstract: "Sync vs async storms against workfcgi, with the callbacks received here.")

    @Option(help: "Base URL of nginx in front of workfcgi.")
    var url = "http://127.0.0.1:8080"

    @Option(help: "Which storms to fire: sync, async or both.")
    var mode: Mode = .both

    @Option(help: "Requests per storm.")
    var requests = 200

    @Option(help: "Concurrent connections per storm.")
    var concurrency = 50

    @Option(help: "The JSON body of every request (async adds callback_url).")
    var body = #"{"payload":{"operation":"hash","complexity":1}}"#

    @Option(help: "Port of the callback receiver on 127.0.0.1 (0 picks a free one).")
    var receiverPort: UInt16 = 9100

    @Option(help: "Seconds to wait for outstanding callbacks after the async storm.")
    var callbackTimeout = 120.0

    @Option(help: "Write the figures as JSON to this file.")
    var json: String?

    enum Mode: String, ExpressibleByArgument, CaseIterable { case sync, async, both }

    func validate() throws {
        guard requests > 0, concurrency > 0 else { throw ValidationError("--requests and --concurrency must be positive") }
        guard (try? JSONSerialization.jsonObject(with: Data(body.utf8))) is [String: Any] else {
            throw ValidationError("--body must be a JSON object")
        }
    }

    func run() async throws {
        var rows: [LatencyRow] = []
        print("loadgen: \(requests) requests per storm, \(concurrency) connections, body \(body)")

        if mode != .async {
            let (samples, seconds) = await Storm.run(url: url + "/sync", body: body, count: requests, concurrency: concurrency, timeout: 120)
            rows.append(LatencyRow(name: "sync latency", sent: requests, counts: Self.count(samples, ok: 200), micros: samples.map(\.micros), seconds: seconds))
        }

        if mode != .sync {
            let receiver = try CallbackReceiver(port: receiverPort)
            let port = try await receiver.start()
            var object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] ?? [:]
            object["callback_url"] = "http://127.0.0.1:\(port)/ok/loadgen"
            let asyncBody = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            let (samples, seconds) = await Storm.run(url: url + "/async", body: asyncBody, count: requests, concurrency: concurrency, timeout: 30)
            rows.append(LatencyRow(name: "async ack", sent: requests, counts: Self.count(samples, ok: 202), micros: samples.map(\.micros), seconds: seconds))

            let accepted = Dictionary(samples.compactMap { s in s.requestID.map { ($0, s.sentAt) } }, uniquingKeysWith: { a, _ in a })
            let ids = Set(accepted.keys)
            await receiver.wait(timeout: callbackTimeout) { calls in
                Set(calls.filter { (200...299).contains($0.answered) }.map(\.webhookID)).isSuperset(of: ids)
            }
            var firstArrival: [String: Date] = [:]
            for call in receiver.delivered where firstArrival[call.webhookID] == nil { firstArrival[call.webhookID] = call.receivedAt }
            let micros = accepted.compactMap { id, sent in firstArrival[id].map { UInt64(max(0, $0.timeIntervalSince(sent)) * 1e6) } }
            let missing = ids.subtracting(firstArrival.keys).count
            rows.append(
                LatencyRow(
                    name: "async callback", sent: ids.count, counts: ["ok": micros.count, "other": missing], micros: micros,
                    seconds: (firstArrival.values.max()?.timeIntervalSince(samples.map(\.sentAt).min() ?? Date())) ?? 0))
            await receiver.stop()
        }

        print()
        print(Report.table(rows))
        print(Report.chart(rows))
        if let json {
            let figures = rows.map { r -> [String: Any] in
                ["series": r.name, "sent": r.sent, "counts": r.counts, "p50_ms": r.p50, "p95_ms": r.p95, "p99_ms": r.p99, "max_ms": r.max, "per_second": r.rate]
            }
            try JSONSerialization.data(withJSONObject: ["rows": figures], options: [.prettyPrinted, .sortedKeys])
                .write(to: URL(fileURLWithPath: json))
        }
    }

    static func count(_ samples: [Sample], ok: Int) -> [String: Int] {
        var counts: [String: Int] = [:]
        for s in samples {
            let key = s.status == ok ? "ok" : s.status == 429 ? "429" : s.status == 503 ? "503" : "other"
            counts[key, default: 0] += 1
        }
        return counts
    }
}
