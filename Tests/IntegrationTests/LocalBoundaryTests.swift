import Foundation
import Delivery
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The local boundary: another user of the machine must not reach workfcgi except through nginx, nor read
/// the database or the webhook secret; and no FastCGI param, however hostile, may crash the responder.
@Suite(.serialized, .timeLimit(.minutes(2))) struct LocalBoundaryTests {
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let canSwitchUser = getuid() == 0 && setpriv != nil

    /// A FastCGI GET from Python, run as another user: prints the CGI status, or the connect error's name.
    static let probe = #"""
        import socket, struct, sys
        def rec(t, body): return struct.pack(">BBHHBB", 1, t, 1, len(body), 0, 0) + body
        def nv(n, v): return bytes([len(n), len(v)]) + n + v
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sys.argv[1])
        except OSError as e:
            print("connect:" + type(e).__name__); sys.exit(0)
        params = nv(b"REQUEST_METHOD", b"GET") + nv(b"DOCUMENT_URI", sys.argv[2].encode()) + nv(b"REMOTE_ADDR", b"127.0.0.1")
        s.sendall(rec(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + rec(4, params) + rec(4, b"") + rec(5, b""))
        out = b""
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
        print("status:" + (out[8:].split(b"Status: ")[1][:3].decode() if b"Status: " in out else "200"))
        """#

    /// Runs the probe as `uid`:`gid` with no other groups.
    func probe(as uid: Int, gid: Int, socket: String, path: String) throws -> String {
        let script = NSTemporaryDirectory() + "probe-\(UUID().uuidString.prefix(8)).py"
        try Self.probe.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o644)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let result = try Stack.run(
            try #require(Self.setpriv), ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "/usr/bin/python3", script, socket, path])
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(.enabled(if: canSwitchUser, "needs root and setpriv")) func anotherUserCannotSkipNginx() throws {
        let stack = try Stack()
        try stack.start()
        // Through nginx (workers run as www-data) everything works as before.
        #expect(try HTTPClient().get(stack.baseURL + "/healthz").status == 200)

        // nobody: the socket files are 0660, so connect itself is refused, for both pools and the doorbell.
        for socket in ["api.sock", "sync.sock"] {
            let out = try probe(as: 65534, gid: 65534, socket: stack.runDirectory + "/" + socket, path: "/metrics")
            #expect(out == "connect:PermissionError", "\(socket): \(out)")
        }
        let doorbell = try FileManager.default.attributesOfItem(atPath: stack.runDirectory + "/deliveryd.sock")
        #expect(doorbell[.posixPermissions] as? Int == 0o600)

        // A user in nginx's group gets through the file mode, but is not nginx: refused by its peer uid.
        let groupOnly = try probe(as: 65534, gid: 33, socket: stack.runDirectory + "/api.sock", path: "/metrics")
        #expect(groupOnly == "status:403", "\(groupOnly)")
        // nginx's own user is served.
        let nginx = try probe(as: 33, gid: 33, socket: stack.runDirectory + "/api.sock", path: "/healthz")
        #expect(nginx == "status:200", "\(nginx)")
    }

    @Test func hostileRequestStartDoesNotCrashTheResponder() throws {
        let stack = try Stack()
        try stack.start([.workfcgi])
        let body = Array(#"{"text": "still here"}"#.utf8)
        for value in ["inf", "nan", "-inf", "1e300", "-1e300"] {
            let answer = try FastCGIClient.request(
                socket: stack.runDirectory + "/sync.sock",
                params: [
                    ("REQUEST_METHOD", "POST"), ("DOCUMENT_URI", "/sync"), ("CONTENT_TYPE", "application/json"),
                    ("CONTENT_LENGTH", "\(body.count)"), ("REMOTE_ADDR", "127.0.0.1"), ("REQUEST_START", value),
                ], body: body)
            #expect(answer.status == 200, "REQUEST_START=\(value): \(answer.body)")
        }
        let health = try FastCGIClient.request(
            socket: stack.runDirectory + "/api.sock", params: [("REQUEST_METHOD", "GET"), ("DOCUMENT_URI", "/healthz")])
        #expect(health.status == 200 || health.status == 503, "workfcgi is still serving: \(health.body)")
    }

    @Test func filesAreOwnerOnlyAndTheSecretIsNotInTheDatabase() async throws {
        // No WORKFCGI_WEBHOOK_SECRET: deliveryd generates one.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_WEBHOOK_SECRET": ""])
        defer { Task { await receiver.stop() } }
        let id = try stack.submit(#"{"text": "secret", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(id, "completed")

        let run = stack.runDirectory
        let secret = try String(contentsOfFile: run + "/webhook-secret", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("whsec_"))
        for file in ["workfcgi.db", "workfcgi.db-wal", "workfcgi.db-shm", "workfcgi.db-writer", "webhook-secret"] {
            let mode = try FileManager.default.attributesOfItem(atPath: run + "/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file) is \(String(mode ?? 0, radix: 8))")
        }
        for file in ["workfcgi.db", "workfcgi.db-wal"] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: run + "/" + file))
            #expect(bytes.range(of: Data("whsec_".utf8)) == nil, "the secret is in \(file)")
        }
        // The callback was signed with the file's secret, and --show-secret prints the same one.
        let call = try #require(receiver.calls.first { $0.webhookID == id })
        #expect(call.signature.hasPrefix("v1,"))
        #expect(
            try WebhookSigner(secrets: [secret]).verify(
                id: id, timestamp: Int(call.timestamp) ?? 0, body: call.body, header: call.signature, now: Int(Date().timeIntervalSince1970)))
        var environment = stack.environment
        environment["WORKFCGI_WEBHOOK_SECRET"] = nil
        let show = try Stack.run(
            "/usr/bin/env", environment.map { "\($0.key)=\($0.value)" } + [Stack.binDirectory.appendingPathComponent("deliveryd").path, "--show-secret"])
        #expect(show.output.trimmingCharacters(in: .whitespacesAndNewlines) == secret)
    }
}
