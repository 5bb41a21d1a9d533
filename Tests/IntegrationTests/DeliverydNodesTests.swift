import Foundation
import Harness
import Testing

/// Two deliveryd nodes on one PostgreSQL database (issue 19 item 2): one is killed with SIGKILL in the middle
/// of an async storm, and the other rescues its jobs. WORKFCGI_LEASE is 60 s and WORKFCGI_NODE_TIMEOUT 2 s, so
/// only the rescuer can explain the dead node's jobs being resumed within 4 s: waiting for their leases would
/// take a minute.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DeliverydNodesTests {
    static let nodeTimeout = 2.0

    @Test func aKilledNodesJobsAreRescuedByTheOther() async throws {
        let url = try PostgresCluster.shared().freshDatabase()
        // Callbacks take a second each (/slow/1000), so both nodes hold jobs when one dies; each node's
        // capacity (WORKFCGI_DELIVERY_CONCURRENCY) keeps what they hold within /status's listing of 50.
        let stack = try Stack(
            settings: [
                "WORKFCGI_DATABASE_URL": url, "WORKFCGI_LEASE": "60s", "WORKFCGI_NODE_TIMEOUT": "\(Int(Self.nodeTimeout))s",
                "WORKFCGI_HOST_CONCURRENCY": "64",
            ],
            serviceSettings: [.deliveryd: ["WORKFCGI_NODE_NAME": "node-a", "WORKFCGI_DELIVERY_CONCURRENCY": "32"]])
        var second = stack.environment
        second["WORKFCGI_NODE_NAME"] = "node-b"
        second["WORKFCGI_DELIVERY_CONCURRENCY"] = "12"
        // Its own doorbell (workfcgi rings node-a's; node-b finds work by its poll).
        second["WORKFCGI_DOORBELL_SOCKET"] = stack.runDirectory + "/deliveryd-b.sock"
        try stack.start()
        let nodeB = try Stack.spawn(
            Stack.binDirectory.appendingPathComponent("deliveryd").path, [], environment: second, directory: stack.directory.path,
            log: stack.runDirectory + "/deliveryd-b.log")
        var nodeBAlive = true
        defer {
            if nodeBAlive { kill(nodeB, SIGKILL) }
            _ = Stack.reap(nodeB, timeout: 10)
        }
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let client = HTTPClient()
        func deliveryd() -> [String: Any] { ((try? client.get(stack.baseURL + "/healthz").json)?["deliveryd"] as? [String: Any]) ?? [:] }
        func states() -> [String: String] {
            Dictionary(
                ((deliveryd()["nodes"] as? [[String: Any]]) ?? []).compactMap { n in (n["name"] as? String).map { ($0, n["state"] as? String ?? "") } },
                uniquingKeysWith: { a, _ in a })
        }
        try stack.waitFor("both nodes alive in /healthz") { states() == ["node-a": "alive", "node-b": "alive"] }

        var acknowledged: [String] = []
        func storm(_ n: Int, from: Int) throws {
            for i in from..<(from + n) {
                acknowledged.append(try stack.submit(#"{"text": "job \#(i)", "callback_url": "http://127.0.0.1:\#(port)/slow/1000/\#(i)"}"#))
            }
        }
        func inHand() -> [(id: String, node: String)] {
            let status = (try? client.get(stack.baseURL + "/status").json)?["deliveryd"] as? [String: Any]
            return ((status?["jobs_in_hand"] as? [[String: Any]]) ?? []).compactMap { j in
                (j["request_id"] as? String).map { ($0, j["node"] as? String ?? "") }
            }
        }
        try storm(40, from: 0)
        var held: Set<String> = []
        try stack.waitFor("node-b to hold jobs") {
            held = Set(inHand().filter { $0.node == "node-b" }.map(\.id))
            return held.count >= 3
        }

        kill(nodeB, SIGKILL)
        nodeBAlive = false
        let killedAt = Date()
        // What node-b held when it died (it may have finished some since the last look).
        held = Set(inHand().filter { $0.node == "node-b" }.map(\.id))
        #expect(!held.isEmpty)
        try storm(20, from: 40)

        // Resumed: in node-a's hand, or finished. Polled every 50 ms.
        var resumedAfter: [String: Double] = [:]
        while resumedAfter.count < held.count && Date().timeIntervalSince(killedAt) < 30 {
            let hand = Dictionary(inHand().map { ($0.id, $0.node) }, uniquingKeysWith: { a, _ in a })
            for id in held where resumedAfter[id] == nil {
                let resumed = hand[id] == "node-a" || (hand[id] == nil && ["completed", "failed"].contains((try? stack.record(id))?["status"] as? String))
                if resumed { resumedAfter[id] = Date().timeIntervalSince(killedAt) }
            }
            usleep(50_000)
        }
        let slowest = resumedAfter.values.max() ?? .infinity
        #expect(resumedAfter.count == held.count, "every job node-b held is resumed: \(resumedAfter.count) of \(held.count)")
        #expect(slowest < 2 * Self.nodeTimeout, "node-b's \(held.count) jobs resumed \(slowest) s after its death (lease: 60 s)")

        // Nothing acknowledged is lost: every job's callback arrives (node-b's possibly twice, same webhook-id).
        let expected = Set(acknowledged)
        #expect(await receiver.wait(timeout: 40) { calls in expected.isSubset(of: Set(calls.map(\.webhookID))) })
        for id in acknowledged { try stack.waitForStatus(id, "completed") }

        // node-b is dead, and the service is healthy with node-a alive.
        try stack.waitFor("node-b dead in /healthz") { states() == ["node-a": "alive", "node-b": "dead"] }
        let health = try client.get(stack.baseURL + "/healthz")
        #expect(health.status == 200 && health.json?["status"] as? String == "ok", "\(health.text)")
        #expect(deliveryd()["nodes_alive"] as? Int == 1 && deliveryd()["running"] as? Bool == true)
        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_deliveryd_node_up{node="node-a"} 1"#) && metrics.contains(#"workfcgi_deliveryd_node_up{node="node-b"} 0"#))
        #expect(metrics.contains(#"workfcgi_deliveryd_nodes{state="dead"} 1"#))
        try stack.waitFor("the rescue counted in /metrics", timeout: 5) {
            let text = (try? client.get(stack.baseURL + "/metrics").text) ?? ""
            return text.split(separator: "\n").contains { line in
                line.hasPrefix(#"workfcgi_delivery_rescued_total{node="node-a"} "#) && (Int(line.split(separator: " ").last ?? "") ?? 0) >= held.count
            }
        }
        #expect(stack.log(.deliveryd).contains("rescued the jobs of a dead deliveryd node"), "logged at notice with the node's name and count")
        await receiver.stop()
    }
}
