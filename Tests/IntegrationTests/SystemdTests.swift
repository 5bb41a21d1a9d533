import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where PID 1 is not systemd (containers, CI), docker-systemctl-replacement (`systemctl3`) starts the
/// very unit files from systemd/ for real. The test installs them, so it only runs as root on a machine
/// without a running systemd, where it cannot disturb real services.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SystemdTests {
    static let systemctl3 = ["/usr/local/bin/systemctl3", "/usr/bin/systemctl3"].first { FileManager.default.isExecutableFile(atPath: $0) }
        ?? ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map { $0 + "/systemctl3" }
        .first { FileManager.default.isExecutableFile(atPath: $0) }
    static let canRun = getuid() == 0 && systemctl3 != nil && !FileManager.default.fileExists(atPath: "/run/systemd/system")

    /// Runs a command to completion with posix_spawn + waitpid (Foundation's Process can miss the exit of a
    /// child whose own children outlive it, as systemctl3's services do). Output goes to a file, not a
    /// pipe, since those services inherit it.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "run-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw Stack.Timeout(description: "cannot run \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test func unitFilesVerify() throws {
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is part of Debian's systemd package")
        // verify resolves ExecStart, so check copies that point at the freshly built binaries.
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("units-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["workfcgi", "deliveryd"] {
            var unit = try String(contentsOf: Stack.packageRoot.appendingPathComponent("systemd/\(name).service"), encoding: .utf8)
            unit = unit.replacingOccurrences(of: "/usr/local/bin/\(name)", with: Stack.binDirectory.appendingPathComponent(name).path)
            unit = unit.replacingOccurrences(of: "/etc/workfcgi/workfcgi.env", with: dir.appendingPathComponent("env").path)
            try unit.write(to: dir.appendingPathComponent("\(name).service"), atomically: true, encoding: .utf8)
        }
        try "WORKFCGI_RUN_DIR=/tmp\n".write(to: dir.appendingPathComponent("env"), atomically: true, encoding: .utf8)
        let result = try Self.run(analyze, ["verify", dir.appendingPathComponent("workfcgi.service").path, dir.appendingPathComponent("deliveryd.service").path])
        #expect(result.status == 0, "\(result.output)")
        #expect(!result.output.contains("workfcgi.service:"), "\(result.output)")
    }

    @Test(.enabled(if: canRun, "needs root, systemctl3, and no running systemd")) func systemctlStartsAndStopsTheStack() async throws {
        let systemctl = try #require(Self.systemctl3)
        let stack = try Stack()
        let env = stack.directory.appendingPathComponent("workfcgi.env")
        try stack.environment.filter { $0.key.hasPrefix("WORKFCGI_") }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: "\n").write(to: env, atomically: true, encoding: .utf8)
        let install = try Self.run(
            Stack.packageRoot.appendingPathComponent("scripts/install-systemd").path,
            ["--bin-dir", Stack.binDirectory.path, "--run-dir", stack.runDirectory, "--env-file", env.path])
        try #require(install.status == 0, "\(install.output)")
        defer {
            _ = try? Self.run(systemctl, ["stop", "workfcgi", "deliveryd"])
            for path in ["/etc/systemd/system/workfcgi.service", "/etc/systemd/system/deliveryd.service", "/etc/workfcgi/workfcgi.env",
                         "/etc/systemd/system/workfcgi.service.d", "/etc/systemd/system/deliveryd.service.d",
                         "/usr/local/bin/workfcgi", "/usr/local/bin/deliveryd"] {
                try? FileManager.default.removeItem(atPath: path)
            }
        }

        // systemctl3 does not follow Wants=, so name both; on a real systemd `start workfcgi` pulls deliveryd in.
        let start = try Self.run(systemctl, ["start", "deliveryd", "workfcgi"])
        #expect(start.status == 0, "\(start.output)")
        #expect(try Self.run(systemctl, ["is-active", "workfcgi"]).output.hasPrefix("active"))
        try stack.waitFor("sockets from the systemd-started workfcgi") {
            FileManager.default.fileExists(atPath: stack.runDirectory + "/api.sock")
        }
        try stack.start([.nginx])

        let client = HTTPClient()
        try stack.waitFor("deliveryd heartbeat") {
            (try? client.get(stack.baseURL + "/healthz"))?.json?["status"] as? String == "ok"
        }
        let receiver = try CallbackReceiver()
        let port = try await receiver.start()
        let accepted = try client.postJSON(stack.baseURL + "/async", #"{"text": "via systemd", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        let id = try #require(accepted.json?["request_id"] as? String)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == id } })
        await receiver.stop()

        let t0 = Date()
        let stop = try Self.run(systemctl, ["stop", "workfcgi", "deliveryd"])
        #expect(stop.status == 0, "\(stop.output)")
        #expect(Date().timeIntervalSince(t0) < 20, "a clean stop, not a kill after the timeout")
        let state = try Self.run(systemctl, ["is-active", "workfcgi", "deliveryd"]).output
        #expect(!state.contains("\nactive") && !state.hasPrefix("active"), "\(state)")
        #expect(!FileManager.default.fileExists(atPath: stack.runDirectory + "/api.sock"), "workfcgi removes its sockets on a clean exit")
    }
}
