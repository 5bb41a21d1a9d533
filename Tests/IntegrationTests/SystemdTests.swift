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
        try FileManager.default.copyItem(
            at: Stack.packageRoot.appendingPathComponent("systemd/workfcgi.socket"), to: dir.appendingPathComponent("workfcgi.socket"))
        try "WORKFCGI_RUN_DIR=/tmp\n".write(to: dir.appendingPathComponent("env"), atomically: true, encoding: .utf8)
        let units = ["workfcgi.service", "workfcgi.socket", "deliveryd.service"].map { dir.appendingPathComponent($0).path }
        let result = try Stack.run(analyze, ["verify"] + units)
        #expect(result.status == 0, "\(result.output)")
        #expect(!result.output.contains("workfcgi.service:") && !result.output.contains("workfcgi.socket:"), "\(result.output)")
    }

    @Test func unitsAreSandboxed() throws {
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze))
        for name in ["workfcgi", "deliveryd"] {
            let unit = Stack.packageRoot.appendingPathComponent("systemd/\(name).service").path
            let result = try Stack.run(analyze, ["security", "--offline=yes", "--no-pager", unit])
            let line = try #require(result.output.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(result.output)")
            let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
            #expect(score != nil && score! <= 2.0, "\(name): \(line)")
        }
    }

    /// An instance of its own beside whatever is installed (its own unit names, folders, binaries and settings
    /// file), started the way an operator starts it: `systemctl start <name>` alone, which in a container
    /// (systemctl3, which ignores Wants=) brings deliveryd up through scripts/systemctl-container.
    @Test(.enabled(if: canRun, "needs root, systemctl3, and no running systemd"),
          .disabled(if: Stack.onPostgres, "the units run as user workfcgi, which cannot enter the tests' PostgreSQL socket folder (0700, its owner's)")) func systemctlStartsAndStopsTheStack() async throws {
        let systemctl = try #require(Self.systemctl3)
        let stack = try Stack()
        let name = "wfct-\(UUID().uuidString.prefix(6).lowercased())"
        let (delivery, runDir, stateDir) = ("\(name)-deliveryd", "/run/\(name)", "/var/lib/\(name)")
        let config = stack.directory.appendingPathComponent("etc")
        let env = stack.directory.appendingPathComponent("workfcgi.env")
        // The units' own folders; the test's settings otherwise.
        var settings = stack.environment.filter { $0.key.hasPrefix("WORKFCGI_") }
        settings["WORKFCGI_RUN_DIR"] = runDir
        settings["WORKFCGI_DB_PATH"] = stateDir + "/workfcgi.db"
        // As installed: deliveryd makes its own secret file in /var/lib/NAME, which loadgen must find.
        settings["WORKFCGI_WEBHOOK_SECRET"] = nil
        try settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: "\n").write(to: env, atomically: true, encoding: .utf8)
        let install = try Stack.run(
            Stack.packageRoot.appendingPathComponent("scripts/install-systemd").path,
            [
                "--name", name, "--bin-dir", Stack.binDirectory.path, "--bin-target", stack.directory.appendingPathComponent("bin").path,
                "--config-dir", config.path, "--run-dir", stack.runDirectory, "--env-file", env.path,
            ])
        try #require(install.status == 0, "\(install.output)")
        #expect(install.output.contains("systemctl start \(name)"), "the closing hint names the command that works here")
        defer {
            _ = try? Stack.run(systemctl, ["stop", name, delivery])
            for path in ["/etc/systemd/system/\(name).service", "/etc/systemd/system/\(name).socket", "/etc/systemd/system/\(delivery).service",
                         stateDir, runDir, "/var/log/journal/\(name).service.log", "/var/log/journal/\(delivery).service.log"] {
                try? FileManager.default.removeItem(atPath: path)
            }
        }

        // What /usr/local/bin/systemctl is where PID 1 is not systemd (the install links it for the default name).
        let start = try Stack.run(Stack.packageRoot.appendingPathComponent("scripts/systemctl-container").path, ["start", name])
        #expect(start.status == 0, "\(start.output)")
        #expect(try Stack.run(systemctl, ["is-active", name]).output.hasPrefix("active"))
        #expect(try Stack.run(systemctl, ["is-active", delivery]).output.hasPrefix("active"), "starting workfcgi started deliveryd")
        try stack.waitFor("sockets from the systemd-started workfcgi") {
            FileManager.default.fileExists(atPath: runDir + "/api.sock")
        }
        // Run as the unit's user, with its folders and modes; nginx reaches the sockets through symlinks.
        let run = try FileManager.default.attributesOfItem(atPath: runDir)
        #expect(run[.ownerAccountName] as? String == "workfcgi")
        #expect(run[.groupOwnerAccountName] as? String == "www-data")
        #expect(run[.posixPermissions] as? Int == 0o710)
        let socket = try FileManager.default.attributesOfItem(atPath: runDir + "/api.sock")
        #expect(socket[.posixPermissions] as? Int == 0o660)
        #expect(socket[.ownerAccountName] as? String == "workfcgi")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: stack.runDirectory + "/api.sock") == runDir + "/api.sock")
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

        // The rest of the README's commands from the linked checkout (run/ links to /run/NAME): deliveryd says the
        // service's own runs and exits 0; loadgen's callbacks arrive signed with the service's secret (/var/lib/NAME).
        func byHand(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
            try Stack.run("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", "WORKFCGI_RUN_DIR=\(stack.runDirectory)",
                Stack.binDirectory.appendingPathComponent(program).path] + arguments)
        }
        let deliveryd = try byHand("deliveryd", [])
        #expect(deliveryd.status == 0 && deliveryd.output.contains("already runs as the installed service \(delivery).service"), "\(deliveryd.output)")
        let loadgen = try byHand("loadgen", [
            "--url", stack.baseURL, "--mode", "async", "--requests", "10", "--concurrency", "2", "--op", "text",
            "--receiver-port", String(try Stack.freePort()), "--callback-timeout", "30", "--expect", "callbacks=all", "--quiet",
        ])
        #expect(loadgen.status == 0, "\(loadgen.output)")
        #expect(loadgen.output.contains("callbacks received 10/10, 0 duplicates, 0 bad signatures"), "\(loadgen.output)")
        #expect(loadgen.output.contains("the secret from \(stateDir)/webhook-secret"), "the service's secret, not run/'s: \(loadgen.output)")

        let t0 = Date()
        let stop = try Stack.run(systemctl, ["stop", name, delivery])
        #expect(stop.status == 0, "\(stop.output)")
        #expect(Date().timeIntervalSince(t0) < 20, "a clean stop, not a kill after the timeout")
        let active = try Stack.run(systemctl, ["is-active", name, delivery]).output
        #expect(!active.contains("\nactive") && !active.hasPrefix("active"), "\(active)")
        #expect(!FileManager.default.fileExists(atPath: runDir + "/api.sock"), "workfcgi removes its sockets on a clean exit")
        let state = try FileManager.default.attributesOfItem(atPath: stateDir)
        #expect(state[.posixPermissions] as? Int == 0o700)
        #expect(try FileManager.default.attributesOfItem(atPath: stateDir + "/workfcgi.db")[.ownerAccountName] as? String == "workfcgi")
    }
}
