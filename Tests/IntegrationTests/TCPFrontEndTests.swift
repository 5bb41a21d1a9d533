import Foundation
import Harness
import Synchronization
import Testing

/// FastCGI over TCP (WORKFCGI_API_SOCKET / WORKFCGI_SYNC_SOCKET as HOST:PORT) behind the real nginx, with
/// WORKFCGI_FRONTEND_ADDRESSES as the peer check: nginx (from 127.0.0.1) is served, another address is
/// closed before any record is read, and counted.
@Suite(.serialized, .timeLimit(.minutes(2))) struct TCPFrontEndTests {
    /// A stack whose workfcgi listens on 127.0.0.11, with site.conf's upstreams pointed there.
    static func tcpStack(settings: [String: String] = [:]) throws -> (Stack, api: Int, sync: Int) {
        let (api, sync) = (try Stack.freePort(), try Stack.freePort())
        var all = [
            "WORKFCGI_API_SOCKET": "127.0.0.11:\(api)", "WORKFCGI_SYNC_SOCKET": "127.0.0.11:\(sync)",
            "WORKFCGI_FRONTEND_ADDRESSES": "127.0.0.1/32",
        ]
        for (k, v) in settings { all[k] = v }
        let stack = try Stack(settings: all)
        let config = stack.directory.appendingPathComponent("nginx/site.conf")
        var text = try String(contentsOf: config, encoding: .utf8)
        for (line, address) in [("server unix:run/sync.sock;", sync), ("server unix:run/api.sock;", api)] {
            guard text.contains(line) else { throw Stack.Failure(description: "nginx/site.conf has no '\(line)'") }
            text = text.replacingOccurrences(of: line, with: "server 127.0.0.11:\(address);")
        }
        try text.write(to: config, atomically: true, encoding: .utf8)
        return (stack, api, sync)
    }

    @Test func asyncThroughNginxOverTCPAndOtherPeersAreClosedUnread() async throws {
        let (stack, api, _) = try Self.tcpStack()
        try stack.start()
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let client = HTTPClient()

        let response = try client.postJSON(
            stack.baseURL + "/async", #"{"text": "over tcp", "callback_url": "http://127.0.0.1:\#(port)/ok/tcp"}"#)
        #expect(response.status == 202, "\(response.text)")
        let id = try #require(response.json?["request_id"] as? String)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } })
        #expect(!FileManager.default.fileExists(atPath: stack.runDirectory + "/api.sock"), "no unix socket is made")

        let params = [
            ("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/healthz"), ("SCRIPT_NAME", "/healthz"), ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
        ]
        // An allowed address is served directly too: the refusal below is the address check, nothing else.
        #expect(try FastCGIClient.request(host: "127.0.0.11", port: api, params: params).status == 200)
        for _ in 0..<3 {
            do {
                let answer = try FastCGIClient.request(host: "127.0.0.11", port: api, sourceAddress: "127.0.0.5", params: params)
                Issue.record("a peer outside WORKFCGI_FRONTEND_ADDRESSES was answered: \(answer)")
            } catch let failure as FastCGIClient.Failure {
                #expect(failure.errno == nil, "the connection is accepted, then closed: \(failure)")
            }
        }
        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_fastcgi_refused_peers_total{reason="address"} 3"#), "\(metrics)")
        #expect(metrics.contains(#"workfcgi_fastcgi_refused_peers_total{reason="user"} 0"#))
        // Logged once for the three (at most one line every 10 s), naming the peer.
        let log = stack.log(.workfcgi)
        #expect(log.components(separatedBy: "refused a FastCGI connection from outside WORKFCGI_FRONTEND_ADDRESSES").count == 2, "\(log)")
        #expect(log.contains("127.0.0.5"))
        #expect(stack.stop(.workfcgi) == 0, "SIGTERM stops the TCP listeners and exits 0: \(stack.log(.workfcgi))")
        await receiver.stop()
    }

    /// Socket activation on TCP (a socket unit's `ListenStream=127.0.0.11:PORT`): the holder binds both
    /// listeners and execs workfcgi with them as descriptors 3 and 4; workfcgi finds each by its address,
    /// serves nginx on them and still refuses other peers.
    @Test func inheritedTCPSocketsAreFoundByAddress() throws {
        let (stack, api, sync) = try Self.tcpStack()
        try stack.start([.deliveryd, .nginx])
        let holder = #"""
            import os, socket, sys
            workfcgi, api, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
            for fd, port in ((3, api), (4, sync)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.11", port)); s.listen(64)
                os.dup2(s.fileno(), fd); os.set_inheritable(fd, True)
            os.environ["LISTEN_PID"] = str(os.getpid()); os.environ["LISTEN_FDS"] = "2"
            os.execv(workfcgi, [workfcgi])
            """#
        let script = stack.directory.appendingPathComponent("holder.py").path
        try holder.write(toFile: script, atomically: true, encoding: .utf8)
        let log = stack.runDirectory + "/workfcgi-activated.log"
        let pid = try Stack.spawn(
            "/usr/bin/python3", [script, Stack.binDirectory.appendingPathComponent("workfcgi").path, "\(api)", "\(sync)"],
            environment: stack.environment, directory: stack.directory.path, log: log)
        var exited = false
        defer {
            if !exited {
                kill(pid, SIGKILL)
                _ = Stack.reap(pid, timeout: 10)
            }
        }
        let client = HTTPClient(timeoutSeconds: 2)
        try stack.waitFor("nginx → inherited TCP sockets") { (try? client.get(stack.baseURL + "/healthz"))?.status == 200 }
        let sent = try HTTPClient().postJSON(stack.baseURL + "/sync", #"{"text": "inherited"}"#)
        #expect(sent.status == 200, "\(sent.text)")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        for port in [api, sync] {
            #expect(text.contains("127.0.0.11:\(port)"), "\(text)")
        }
        let params = [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/healthz"), ("REMOTE_ADDR", "127.0.0.1")]
        #expect(throws: FastCGIClient.Failure.self) {
            try FastCGIClient.request(host: "127.0.0.11", port: api, sourceAddress: "127.0.0.5", params: params)
        }
        #expect(text.contains("listening on a socket from systemd"), "\(text)")
        kill(pid, SIGTERM)
        let status = Stack.reap(pid, timeout: 15)
        exited = status != nil
        #expect(status == 0, "\(text)")
    }

    /// `--check-config` shows the TCP addresses and the peer list, and names a bad entry (exit 2).
    @Test func checkConfigShowsAndRefusesTCPSettings() throws {
        let folder = NSTemporaryDirectory() + "tcp-cli-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func check(_ env: [String]) throws -> (status: Int32, output: String) {
            try Stack.run("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", "WORKFCGI_RUN_DIR=\(folder)"] + env
                + [Stack.binDirectory.appendingPathComponent("workfcgi").path, "--check-config"])
        }
        let defaults = try check([])
        #expect(defaults.status == 0 && defaults.output.contains("WORKFCGI_FRONTEND_ADDRESSES=127.0.0.0/8,::1/128"), "\(defaults.output)")
        let tcp = try check(["WORKFCGI_API_SOCKET=[::1]:9000", "WORKFCGI_SYNC_SOCKET=10.0.0.5:9001", "WORKFCGI_FRONTEND_ADDRESSES=10.0.0.0/24"])
        for line in ["WORKFCGI_API_SOCKET=[::1]:9000", "WORKFCGI_SYNC_SOCKET=10.0.0.5:9001", "WORKFCGI_FRONTEND_ADDRESSES=10.0.0.0/24"] {
            #expect(tcp.status == 0 && tcp.output.contains(line), "\(line): \(tcp.output)")
        }
        for (variable, value, named) in [
            ("WORKFCGI_API_SOCKET", "db.internal:9000", "db.internal"), ("WORKFCGI_SYNC_SOCKET", "127.0.0.1:99999", "99999"),
            ("WORKFCGI_FRONTEND_ADDRESSES", "10.0.0.0/24,10.0.0.0/33", "10.0.0.0/33"),
        ] {
            let bad = try check(["\(variable)=\(value)"])
            #expect(bad.status == 2 && bad.output.contains(variable) && bad.output.contains(named), "\(variable)=\(value): \(bad.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: folder + "/workfcgi.db"), "no daemon started")
    }

    /// nginx/upstream.conf as a copy in a temporary folder, with its ports and listen line replaced.
    static func upstreamConfig(port: Int, nodes: [(api: Int, sync: Int)]) throws -> String {
        var text = try String(contentsOf: Stack.packageRoot.appendingPathComponent("nginx/upstream.conf"), encoding: .utf8)
        var lines = [("listen 127.0.0.1:8080", "listen 127.0.0.1:\(port)")]
        for (i, node) in nodes.enumerated() {
            lines += [("server 127.0.0.1\(i + 1):9000 ", "server 127.0.0.1\(i + 1):\(node.api) "), ("server 127.0.0.1\(i + 1):9001 ", "server 127.0.0.1\(i + 1):\(node.sync) ")]
        }
        for (line, replacement) in lines {
            guard text.contains(line) else { throw Stack.Failure(description: "nginx/upstream.conf has no '\(line)'") }
            text = text.replacingOccurrences(of: line, with: replacement)
        }
        return text
    }

    @Test func upstreamExampleIsValid() throws {
        let folder = NSTemporaryDirectory() + "upstream-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/run", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/nginx", withIntermediateDirectories: true)
        for file in ["fastcgi_params", "operators.conf", "upstream.conf"] {
            try FileManager.default.copyItem(atPath: Stack.packageRoot.path + "/nginx/" + file, toPath: folder + "/nginx/" + file)
        }
        let result = try Stack.run(Stack.nginxBinary, ["-t", "-p", folder, "-c", "nginx/upstream.conf"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("test is successful"), "\(result.output)")
        // Failover never re-sends a POST that reached a node: `non_idempotent` is not there.
        let text = try String(contentsOf: Stack.packageRoot.appendingPathComponent("nginx/upstream.conf"), encoding: .utf8)
        let directives = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        #expect(directives.contains { $0.contains("fastcgi_next_upstream error timeout;") })
        #expect(!directives.contains { $0.contains("non_idempotent") })
        #expect(directives.filter { $0.contains("max_fails=") }.count == 4)
    }

    /// Two workfcgi nodes on one PostgreSQL behind nginx/upstream.conf: the stack's own workfcgi on 127.0.0.11
    /// (node 1) and a second one spawned on 127.0.0.12 (node 2, `workfcgi-2.log`), each answering /healthz
    /// itself. Returns once both do; the caller ends node 2 (its pid). `settings` go to both nodes and deliveryd.
    static func twoNodes(
        settings: [String: String] = [:]
    ) throws -> (stack: Stack, one: (api: Int, sync: Int), two: (api: Int, sync: Int), node2: pid_t) {
        let url = try PostgresCluster.shared().freshDatabase()
        let one = (api: try Stack.freePort(), sync: try Stack.freePort())
        let two = (api: try Stack.freePort(), sync: try Stack.freePort())
        var all = [
            "WORKFCGI_DATABASE_URL": url, "WORKFCGI_API_SOCKET": "127.0.0.11:\(one.api)", "WORKFCGI_SYNC_SOCKET": "127.0.0.11:\(one.sync)",
            "WORKFCGI_FRONTEND_ADDRESSES": "127.0.0.1/32",
        ]
        for (k, v) in settings { all[k] = v }
        let stack = try Stack(settings: all)
        try Self.upstreamConfig(port: stack.port, nodes: [one, two])
            .write(to: stack.directory.appendingPathComponent("nginx/site.conf"), atomically: true, encoding: .utf8)
        var second = stack.environment
        second["WORKFCGI_API_SOCKET"] = "127.0.0.12:\(two.api)"
        second["WORKFCGI_SYNC_SOCKET"] = "127.0.0.12:\(two.sync)"
        let node2 = try Stack.spawn(
            Stack.binDirectory.appendingPathComponent("workfcgi").path, [], environment: second, directory: stack.directory.path,
            log: stack.runDirectory + "/workfcgi-2.log")
        do {
            try stack.start()
            // nginx's /healthz may have been node 2's answer: wait for each node itself.
            try stack.waitFor("node 1") { (try? Self.fastCGI(.init(host: "127.0.0.11", port: one.api), "GET", "/healthz"))?.status == 200 }
            try stack.waitFor("node 2") { (try? Self.fastCGI(.init(host: "127.0.0.12", port: two.api), "GET", "/healthz"))?.status == 200 }
        } catch {
            kill(node2, SIGKILL)
            _ = Stack.reap(node2, timeout: 10)
            throw error
        }
        return (stack, one, two, node2)
    }

    struct Node {
        var host: String
        var port: Int
    }

    /// One request straight to a node, as nginx sends it from 127.0.0.1 for 127.0.0.1 (an operator's address and host).
    static func fastCGI(_ node: Node, _ method: String, _ path: String, body: String = "", key: String? = nil) throws -> (status: Int, body: String) {
        let bytes = Array(body.utf8)
        var params = [
            ("REQUEST_METHOD", method), ("SCRIPT_NAME", path), ("REQUEST_URI", path), ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"), ("HTTP_HOST", "127.0.0.1"),
        ]
        if method == "POST" { params += [("CONTENT_TYPE", "application/json"), ("CONTENT_LENGTH", "\(bytes.count)")] }
        if let key { params.append(("HTTP_IDEMPOTENCY_KEY", key)) }
        return try FastCGIClient.request(host: node.host, port: node.port, params: params, body: bytes)
    }

    static func requestID(_ text: String) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any])?["request_id"] as? String
    }

    /// Issue 19's topology: two workfcgi nodes (127.0.0.11, 127.0.0.12) behind nginx/upstream.conf, two deliveryd
    /// on the same PostgreSQL, one receiver. An idempotency key through node 1 then node 2 is one job; a
    /// redeliver through each node is sent again with the same webhook-id. Then an /async storm from 16 client
    /// addresses, each job with its own Idempotency-Key that its client retries until a 202 (as a client whose
    /// answer was lost does), with deliveryd 1 and then workfcgi node 1 killed with SIGKILL midway: every
    /// acknowledged job's callback arrives, duplicates only under the job's own webhook-id, counted. The lease
    /// is short (3 s): a dead deliveryd's jobs come back to the other when their leases run out.
    @Test func twoNodesAndTwoDeliverydWithOneOfEachKilledMidStorm() async throws {
        let (stack, one, two, node2) = try Self.twoNodes(settings: [
            "WORKFCGI_LEASE": "3s", "WORKFCGI_CALLBACK_TIMEOUT": "1s", "WORKFCGI_BACKLOG_LIMIT": "100000", "WORKFCGI_DURABILITY": "full",
        ])
        defer {
            kill(node2, SIGKILL)
            _ = Stack.reap(node2, timeout: 10)
        }
        // deliveryd 2: the same database, its own doorbell (workfcgi rings deliveryd 1's; 2 claims on its 200 ms poll).
        var env = stack.environment
        env["WORKFCGI_DOORBELL_SOCKET"] = stack.runDirectory + "/deliveryd-2.sock"
        let deliveryd2 = try Stack.spawn(
            Stack.binDirectory.appendingPathComponent("deliveryd").path, [], environment: env, directory: stack.directory.path,
            log: stack.runDirectory + "/deliveryd-2.log")
        defer {
            kill(deliveryd2, SIGKILL)
            _ = Stack.reap(deliveryd2, timeout: 10)
        }
        try stack.waitFor("deliveryd 2") { FileManager.default.fileExists(atPath: stack.runDirectory + "/deliveryd-2.sock") }
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        defer { receiver.stopNow() }
        let (node1, node2API) = (Node(host: "127.0.0.11", port: one.api), Node(host: "127.0.0.12", port: two.api))
        func deliveries(_ id: String) -> Int { receiver.delivered.filter { $0.webhookID == id }.count }

        // The same key through node 1, then node 2: one job, the second answer a replay.
        let body = #"{"text": "one job", "callback_url": "http://127.0.0.1:\#(port)/ok/key"}"#
        let first = try Self.fastCGI(node1, "POST", "/async", body: body, key: "order-7")
        let replay = try Self.fastCGI(node2API, "POST", "/async", body: body, key: "order-7")
        #expect(first.status == 202 && replay.status == 202, "\(first) \(replay)")
        let job = try #require(Self.requestID(first.body))
        #expect(Self.requestID(replay.body) == job)
        let other = try stack.submit(#"{"text": "two", "callback_url": "http://127.0.0.1:\#(port)/ok/other"}"#)

        // A redeliver through each node: sent again, the same webhook-id.
        for (id, node) in [(job, node2API), (other, node1)] {
            try stack.waitForStatus(id, "completed")
            #expect(deliveries(id) == 1)
            let redeliver = try Self.fastCGI(node, "POST", "/requests/\(id)/redeliver")
            #expect(redeliver.status == 202, "\(node.host): \(redeliver)")
            #expect(await receiver.wait(timeout: 20) { calls in calls.filter { $0.webhookID == id && $0.answered == 200 }.count == 2 }, "\(node.host)")
        }

        // The storm.
        let total = 800
        let next = Atomic<Int>(0)
        let acked = Mutex<Set<String>>([])
        let retried = Atomic<Int>(0)
        let unacked = Atomic<Int>(0)
        let stormDone = DispatchGroup()
        for t in 0..<16 {
            stormDone.enter()
            Thread {
                let client = HTTPClient(timeoutSeconds: 10, sourceAddress: "127.0.1.\(t + 1)")
                while true {
                    let i = next.add(1, ordering: .relaxed).oldValue
                    guard i < total else { break }
                    let body = #"{"text": "job \#(i)", "callback_url": "http://127.0.0.1:\#(port)/ok/storm"}"#
                    var id: String?
                    for attempt in 0..<100 {
                        if attempt > 0 {
                            _ = retried.add(1, ordering: .relaxed)
                            usleep(30_000)
                        }
                        if let r = try? client.postJSON(stack.baseURL + "/async", body, headers: ["Idempotency-Key": "storm-\(i)"]),
                            r.status == 202
                        {
                            id = r.json?["request_id"] as? String
                            break
                        }
                    }
                    if let id { acked.withLock { _ = $0.insert(id) } } else { unacked.add(1, ordering: .relaxed) }
                }
                stormDone.leave()
            }.start()
        }
        func whenAcked(_ n: Int) async {
            while acked.withLock({ $0.count }) < n && next.load(ordering: .relaxed) < total {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        await whenAcked(total / 4)
        stack.crash(.deliveryd)
        await whenAcked(total / 2)
        stack.crash(.workfcgi)
        let killedAt = acked.withLock { $0.count }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in stormDone.notify(queue: .global()) { c.resume() } }

        let acknowledged = acked.withLock { $0 }
        let all = await receiver.wait(timeout: 60) { calls in
            Set(calls.filter { $0.answered == 200 }.map(\.webhookID)).isSuperset(of: acknowledged)
        }
        let storm = receiver.delivered.filter { $0.path == "/ok/storm" }
        let delivered = Set(storm.map(\.webhookID))
        let missing = acknowledged.subtracting(delivered)
        // A duplicate is the same job again: its body names the request its webhook-id does.
        let mismatched = storm.filter { call in
            ((try? JSONSerialization.jsonObject(with: Data(call.body))) as? [String: Any])?["request_id"] as? String != call.webhookID
        }
        print(
            "two nodes: \(total) jobs from 16 addresses, \(acknowledged.count) acknowledged (\(killedAt) when node 1 was killed), "
                + "\(unacked.load(ordering: .relaxed)) never acknowledged, \(retried.load(ordering: .relaxed)) retries, "
                + "\(delivered.intersection(acknowledged).count) delivered, \(missing.count) missing, \(storm.count - delivered.count) duplicate "
                + "deliveries (same webhook-id), \(delivered.subtracting(acknowledged).count) delivered without a 202 seen")
        #expect(acknowledged.count == total, "every job is acknowledged once its client retries with its key")
        #expect(all && missing.isEmpty, "acknowledged but never delivered: \(missing.prefix(5))")
        #expect(mismatched.isEmpty, "a callback whose webhook-id is not its job's: \(mismatched.prefix(3).map(\.webhookID))")
        #expect(delivered.subtracting(acknowledged).isEmpty, "a job nobody got a 202 for: the key made every retry the same job")

        // After the kills: node 2 and deliveryd 2 alone. A redeliver through nginx (node 2) still goes out.
        let last = try #require(acknowledged.first)
        let before = deliveries(last)
        #expect(try HTTPClient().request("POST", stack.baseURL + "/requests/\(last)/redeliver").status == 202)
        #expect(await receiver.wait(timeout: 20) { calls in calls.filter { $0.webhookID == last && $0.answered == 200 }.count > before })
        try stack.waitFor("the queue to drain", timeout: 20) {
            (try? Self.fastCGI(node2API, "GET", "/healthz")).flatMap { Self.json($0.body)?["queue_depth"] as? Int } == 0
        }
        #expect(kill(deliveryd2, 0) == 0 && kill(node2, 0) == 0, "the survivors still run")
    }

    static func json(_ text: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }
}
