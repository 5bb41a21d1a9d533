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

    @Test(.disabled(if: Stack.onPostgres, "reads the SQLite file and its WAL")) func filesAreOwnerOnlyAndTheSecretIsNotInTheDatabase() async throws {
        // No WORKFCGI_WEBHOOK_SECRET: deliveryd generates one.
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_WEBHOOK_SECRET": ""])
        defer { receiver.stopNow() }
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

    // MARK: - Symlinks and other users' files where the daemons create theirs (issue 16, findings 4 and 7)

    /// Runs one daemon of `stack` until it exits; at most 10 s (a daemon that does not refuse serves on).
    func runToExit(_ stack: Stack, _ program: String, settings: [String: String] = [:]) throws -> (status: Int32, output: String) {
        var environment = stack.environment
        for (key, value) in settings { environment[key] = value }
        return try Stack.run(
            "/usr/bin/timeout",
            ["10", "/usr/bin/env", "-C", stack.directory.path] + environment.map { "\($0.key)=\($0.value)" }
                + [Stack.binDirectory.appendingPathComponent(program).path])
    }

    /// A file of another user's (65534) outside the run folder, 0644, with known contents.
    func victimFile() throws -> String {
        let path = NSTemporaryDirectory() + "victim-\(UUID().uuidString.prefix(8))"
        try "not yours\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        chown(path, 65534, 65534)
        return path
    }

    func expectUntouched(_ path: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var info = stat()
        #expect(lstat(path, &info) == 0, sourceLocation: sourceLocation)
        #expect(info.st_mode & 0o7777 == 0o644, "\(what): mode \(String(info.st_mode & 0o7777, radix: 8))", sourceLocation: sourceLocation)
        #expect(info.st_uid == 65534, "\(what): owner \(info.st_uid)", sourceLocation: sourceLocation)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "not yours\n", "\(what): contents", sourceLocation: sourceLocation)
    }

    /// Names in the run folder either daemon creates or opens, each with the daemon that does (on PostgreSQL no
    /// database files, and deliveryd's lock is its doorbell's).
    static let plantedNames: [(name: String, program: String)] =
        [("api.sock.lock", "workfcgi"), ("api.sock", "workfcgi"), ("sync.sock", "workfcgi"), ("deliveryd.sock", "deliveryd"), ("webhook-secret", "deliveryd")]
        + (Stack.onPostgres
            ? [("deliveryd.sock.lock", "deliveryd")]
            : [("workfcgi.db", "workfcgi"), ("workfcgi.db-writer", "workfcgi"), ("workfcgi.db-wal", "workfcgi"), ("workfcgi.db-shm", "workfcgi"),
               ("workfcgi.db-deliveryd.lock", "deliveryd")])

    @Test(.enabled(if: canSwitchUser, "needs root"), arguments: plantedNames.map(\.name))
    func aPlantedSymlinkIsNeverFollowed(_ name: String) throws {
        let program = try #require(Self.plantedNames.first { $0.name == name }).program
        let stack = try Stack()
        let target = try victimFile()
        defer { try? FileManager.default.removeItem(atPath: target) }
        let planted = stack.runDirectory + "/" + name
        #expect(symlink(target, planted) == 0)
        // No secret in the environment: deliveryd reads the secret file.
        let result = try runToExit(stack, program, settings: name == "webhook-secret" ? ["WORKFCGI_WEBHOOK_SECRET": ""] : [:])
        #expect(result.status == 1, "\(program) with \(name) a symlink: exit \(result.status)\n\(result.output.suffix(800))")
        #expect(result.output.contains("\(planted) is a symlink"), "\(result.output.suffix(800))")
        try expectUntouched(target, name)
    }

    @Test(.enabled(if: canSwitchUser, "needs root"), arguments: plantedNames.map(\.name))
    func anotherUsersFileIsNeverWrittenOrRemoved(_ name: String) throws {
        let program = try #require(Self.plantedNames.first { $0.name == name }).program
        let stack = try Stack()
        let planted = stack.runDirectory + "/" + name
        try "not yours\n".write(toFile: planted, atomically: false, encoding: .utf8)
        chmod(planted, 0o644)
        chown(planted, 65534, 65534)
        let result = try runToExit(stack, program, settings: name == "webhook-secret" ? ["WORKFCGI_WEBHOOK_SECRET": ""] : [:])
        #expect(result.status == 1, "\(program) with \(name) another user's: exit \(result.status)\n\(result.output.suffix(800))")
        let expected = name.hasSuffix(".sock") ? "\(planted) is in the way of a socket" : "\(planted) is owned by uid 65534"
        #expect(result.output.contains(expected), "\(result.output.suffix(800))")
        try expectUntouched(planted, name)
    }

    /// Folders another user could write or swap: both daemons refuse to start, naming the path.
    @Test(.enabled(if: canSwitchUser, "needs root"), arguments: ["theirs", "writable", "symlink", "parent theirs"])
    func aRunFolderOthersCouldChangeIsRefused(_ kind: String) throws {
        let stack = try Stack()
        let run = stack.runDirectory
        var settings: [String: String] = [:]
        let named: String
        switch kind {
        case "theirs":
            chown(run, 65534, 65534)
            named = "\(run) is owned by uid 65534"
        case "writable":
            chmod(run, 0o777)
            named = "\(run) can be written by other users (mode 0777): chmod 0710 \(run)"
        case "symlink":
            symlink(run, stack.directory.path + "/link")
            settings["WORKFCGI_RUN_DIR"] = stack.directory.path + "/link"
            named = "\(stack.directory.path)/link is a symlink"
        default:
            chown(stack.directory.path, 65534, 65534)
            named = "\(stack.directory.path), a folder above \(run), is owned by uid 65534"
        }
        for program in ["workfcgi", "deliveryd"] {
            let result = try runToExit(stack, program, settings: settings)
            #expect(result.status == 1, "\(program), run folder \(kind): exit \(result.status)\n\(result.output.suffix(800))")
            #expect(result.output.contains(named), "\(program): \(result.output.suffix(800))")
        }
        // Nothing was created there.
        #expect(try FileManager.default.contentsOfDirectory(atPath: run).filter { !$0.hasSuffix(".log") } == [])
    }

    /// The run folder exists 0755 (a checkout's run/ always does): the daemons make it 0710 with nginx's
    /// group, so another user can neither list it nor read a log in it (request ids open GET /requests/{id}).
    @Test(.enabled(if: canSwitchUser, "needs root and setpriv")) func anotherUserCannotReadTheLogsOrListTheRunFolder() async throws {
        let stack = try Stack()
        let run = stack.runDirectory
        #expect(try FileManager.default.attributesOfItem(atPath: run)[.posixPermissions] as? Int == 0o755)
        try stack.start()
        // Nothing listens on port 9: deliveryd logs its failing attempts too.
        let id = try stack.submit(#"{"text": "a job", "callback_url": "http://127.0.0.1:9/hook"}"#)
        _ = try HTTPClient().get(stack.baseURL + "/requests/\(id)")
        let attributes = try FileManager.default.attributesOfItem(atPath: run)
        #expect(attributes[.posixPermissions] as? Int == 0o710)
        if let www = getgrnam("www-data") { #expect(attributes[.groupOwnerAccountID] as? Int == Int(www.pointee.gr_gid)) }

        let setpriv = try #require(Self.setpriv)
        let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        let list = try Stack.run(setpriv, nobody + ["/bin/ls", run])
        #expect(list.status != 0 && list.output.contains("Permission denied"), "ls run/ as nobody: \(list.output)")
        try stack.waitFor("nginx's access log") {
            ((try? String(contentsOfFile: run + "/nginx-access.log", encoding: .utf8)) ?? "").contains(id)
        }
        let logs = try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.hasSuffix(".log") }
        #expect(Set(logs).isSuperset(of: ["workfcgi.log", "deliveryd.log", "nginx-error.log", "nginx-access.log"]), "\(logs)")
        for log in logs {
            let read = try Stack.run(setpriv, nobody + ["/bin/cat", run + "/" + log])
            #expect(read.status != 0 && !read.output.contains(id), "\(log) as nobody: \(read.output.prefix(300))")
        }
        // The logs the test harness writes (the daemons' stderr) are owner-only, as scripts/demo's are.
        for log in ["workfcgi.log", "deliveryd.log"] {
            #expect(try FileManager.default.attributesOfItem(atPath: run + "/" + log)[.posixPermissions] as? Int == 0o600)
        }
    }
}
