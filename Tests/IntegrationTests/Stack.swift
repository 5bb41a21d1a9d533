import Foundation
import Harness

#if canImport(Glibc)
import Glibc
#endif

/// The real stack for one test: deliveryd, workfcgi and nginx (with the repository's nginx/site.conf,
/// only the port and rate limit changed) in a fresh temporary folder, talking over loopback. Another
/// front end can stand in for nginx (`frontEnd`), with its config from frontends/, only the port changed.
final class Stack: @unchecked Sendable {
    /// `.nginx` is the front end, whichever `frontEnd` the stack was made with.
    enum Service: String, CaseIterable { case deliveryd, workfcgi, nginx }

    /// The HTTP servers the repository has a ready config for, each started as it would be by hand.
    enum FrontEnd: String, CaseIterable, Sendable, CustomStringConvertible {
        case nginx, apache, lighttpd, caddy
        var description: String { rawValue }

        /// The config, relative to the stack's folder (a copy of the repository's).
        var config: String {
            switch self {
            case .nginx: "nginx/site.conf"
            case .apache: "frontends/apache.conf"
            case .lighttpd: "frontends/lighttpd.conf"
            case .caddy: "frontends/Caddyfile"
            }
        }

        /// The config's listen line for port 8080, which the copy gets the stack's port in.
        func listen(_ port: Int) -> (String, String) {
            switch self {
            case .nginx: ("listen 127.0.0.1:8080", "listen 127.0.0.1:\(port)")
            case .apache: ("Listen 127.0.0.1:8080", "Listen 127.0.0.1:\(port)")
            case .lighttpd: ("server.port = 8080", "server.port = \(port)")
            case .caddy: ("http://:8080 {", "http://:\(port) {")
            }
        }

        var binary: String {
            let names: [String] =
                switch self {
                case .nginx: ["/usr/sbin/nginx", "/usr/bin/nginx"]
                case .apache: ["/usr/sbin/apache2"]
                case .lighttpd: ["/usr/sbin/lighttpd"]
                case .caddy: ["/usr/bin/caddy"]
                }
            return names.first { FileManager.default.isExecutableFile(atPath: $0) } ?? names[0]
        }

        /// Where the server writes its own error log, when not to stderr (relative to the stack's folder).
        var errorLog: String? {
            switch self {
            case .nginx: "run/nginx-error.log"
            case .apache: "run/apache-error.log"
            case .lighttpd, .caddy: nil
            }
        }

        /// What stops it: nginx finishes requests in flight on SIGQUIT, the others on SIGTERM.
        var stopSignal: Int32 { self == .nginx ? SIGQUIT : SIGTERM }
    }

    let directory: URL
    let port: Int
    let environment: [String: String]
    /// Settings for one service only, over `environment` (e.g. two daemons given different values).
    let serviceSettings: [Service: [String: String]]
    /// A command that workfcgi and deliveryd are started through (e.g. into a private mount namespace).
    let wrapper: [String]
    let frontEnd: FrontEnd
    private var processes: [Service: Process] = [:]
    /// The front end's process (group leader), spawned without Foundation (see `launchFrontEnd`).
    private var frontEndPID: pid_t?

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let binDirectory = packageRoot.appendingPathComponent(".build/debug")
    static let nginxBinary = ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "nginx"
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var runDirectory: String { directory.appendingPathComponent("run").path }

    /// The set-up most tests share: a started stack and a started callback receiver on loopback (its port).
    static func startedWithReceiver(
        settings: [String: String] = [:], rate: String = "100r/s", burst: Int = 200
    ) async throws -> (Stack, CallbackReceiver, UInt16) {
        let stack = try Stack(settings: settings, rate: rate, burst: burst)
        try stack.start()
        let receiver = try CallbackReceiver()
        return (stack, receiver, try await receiver.start())
    }

    /// `settings` override the test defaults (short retries, loopback callbacks allowed).
    /// `operators` replaces nginx/operators.conf (e.g. `allow all;`, to show the boundary holds in workfcgi alone).
    init(
        settings: [String: String] = [:], rate: String = "100r/s", burst: Int = 200, wrapper: [String] = [], operators: String? = nil,
        serviceSettings: [Service: [String: String]] = [:], frontEnd: FrontEnd = .nginx
    ) throws {
        self.wrapper = wrapper
        self.serviceSettings = serviceSettings
        self.frontEnd = frontEnd
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("workfcgi-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("run"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("nginx"), withIntermediateDirectories: true)
        port = try Self.freePort()

        var conf = try String(contentsOf: Self.packageRoot.appendingPathComponent("nginx/site.conf"), encoding: .utf8)
        conf = conf.replacingOccurrences(of: "listen 127.0.0.1:8080", with: "listen 127.0.0.1:\(port)")
        conf = conf.replacingOccurrences(of: "rate=100r/s", with: "rate=\(rate)")
        conf = conf.replacingOccurrences(of: "burst=200", with: "burst=\(burst)")
        try conf.write(to: directory.appendingPathComponent("nginx/site.conf"), atomically: true, encoding: .utf8)
        for file in ["fastcgi_params", "operators.conf"] {
            try FileManager.default.copyItem(
                at: Self.packageRoot.appendingPathComponent("nginx/\(file)"), to: directory.appendingPathComponent("nginx/\(file)"))
        }
        if let operators { try operators.write(to: directory.appendingPathComponent("nginx/operators.conf"), atomically: true, encoding: .utf8) }
        if frontEnd != .nginx { try Self.copyFrontEnd(frontEnd, port: port, to: directory) }

        var env = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": NSTemporaryDirectory()]
        env["WORKFCGI_RUN_DIR"] = directory.appendingPathComponent("run").path
        env["WORKFCGI_ALLOW_PRIVATE_CALLBACKS"] = "true"
        env["WORKFCGI_CALLBACK_PORTS"] = "1-65535"
        env["WORKFCGI_RETRY_SCHEDULE"] = "200ms,400ms,800ms,1600ms"
        env["WORKFCGI_CALLBACK_TIMEOUT"] = "2s"
        env["WORKFCGI_LEASE"] = "4s"
        env["WORKFCGI_POLL_INTERVAL"] = "200ms"
        env["WORKFCGI_WEBHOOK_SECRET"] = Self.secret
        env["WORKFCGI_SYNC_THREADS"] = "32"
        env["WORKFCGI_API_THREADS"] = "8"
        env["WORKFCGI_DURABILITY"] = "normal"
        // Caddy's workers are its own user (in www-data's group, which the sockets get).
        if frontEnd == .caddy { env["WORKFCGI_FRONTEND_USERS"] = "www-data,caddy" }
        for (k, v) in settings { env[k] = v }
        // TEST_STORE=postgres: every stack that does not choose its store runs on a fresh schema of the
        // tests' private PostgreSQL, so the same integration tests prove both stores.
        if Self.onPostgres && env["WORKFCGI_DATABASE_URL"] == nil { env["WORKFCGI_DATABASE_URL"] = try PostgresCluster.shared().freshDatabase() }
        environment = env
    }

    /// The test run's store for stacks that do not choose one (`TEST_STORE`: `sqlite`, the default, or
    /// `postgres`). Tests that read the SQLite file itself are `.disabled(if: Stack.onPostgres)`.
    static let onPostgres: Bool = {
        switch ProcessInfo.processInfo.environment["TEST_STORE"] ?? "sqlite" {
        case "postgres": return true
        case "sqlite", "": return false
        case let other: fatalError("TEST_STORE is sqlite or postgres, not \(other)")
        }
    }()

    /// The repository's frontends/ (configs and error files) in `directory`, the config listening on `port`;
    /// for Caddy also a home it can write to (its autosave and storage), so no test writes to /var/lib/caddy.
    private static func copyFrontEnd(_ frontEnd: FrontEnd, port: Int, to directory: URL) throws {
        let copy = directory.appendingPathComponent("frontends")
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("frontends"), to: copy)
        let config = directory.appendingPathComponent(frontEnd.config)
        let (line, replacement) = frontEnd.listen(port)
        let text = try String(contentsOf: config, encoding: .utf8)
        guard text.contains(line) else { throw Failure(description: "\(frontEnd.config) has no '\(line)'") }
        try text.replacingOccurrences(of: line, with: replacement).write(to: config, atomically: true, encoding: .utf8)
        if frontEnd == .caddy {
            let home = directory.appendingPathComponent("caddy-home")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            if geteuid() == 0, let user = getpwnam("caddy") { chown(home.path, user.pointee.pw_uid, user.pointee.pw_gid) }
        }
    }

    deinit {
        stopAll()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts the given services (all by default) and waits until nginx answers /healthz through workfcgi.
    func start(_ services: [Service] = Service.allCases) throws {
        for service in services { try launch(service) }
        // A TCP listener (HOST:PORT) has no file to wait for: the /healthz wait below covers it.
        let unixSockets = [environment["WORKFCGI_API_SOCKET"], environment["WORKFCGI_SYNC_SOCKET"]].allSatisfy {
            $0 == nil || $0!.contains("/") || !$0!.contains(":")
        }
        if services.contains(.workfcgi) && unixSockets {
            try waitFor("workfcgi sockets") {
                FileManager.default.fileExists(atPath: self.runDirectory + "/api.sock")
                    && FileManager.default.fileExists(atPath: self.runDirectory + "/sync.sock")
            }
        }
        if services.contains(.nginx) && services.contains(.workfcgi) {
            let client = HTTPClient(timeoutSeconds: 2)
            try waitFor("\(frontEnd) → workfcgi") { (try? client.get(self.baseURL + "/healthz"))?.status == 200 }
        }
        if services.contains(.deliveryd) {
            try waitFor("deliveryd doorbell") { FileManager.default.fileExists(atPath: self.runDirectory + "/deliveryd.sock") }
        }
    }

    func launch(_ service: Service) throws {
        if service == .nginx { return try launchFrontEnd() }
        let process = Process()
        let log = directory.appendingPathComponent(logPath(service))
        // Owner only: logs carry request ids, and each opens GET /requests/{id}.
        if !FileManager.default.fileExists(atPath: log.path) {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.currentDirectoryURL = directory
        process.environment = environment.merging(serviceSettings[service] ?? [:]) { _, own in own }
        let binary = Self.binDirectory.appendingPathComponent(service.rawValue)
        if let first = wrapper.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(wrapper.dropFirst()) + [binary.path]
        } else {
            process.executableURL = binary
        }
        try process.run()
        processes[service] = process
    }

    /// SIGTERM and wait (up to `timeout` seconds); returns the exit status, or nil when it had to be killed.
    @discardableResult
    func stop(_ service: Service, timeout: Double = 15) -> Int32? {
        if service == .nginx { return stopFrontEnd(timeout: timeout) }
        guard let process = processes.removeValue(forKey: service), process.isRunning else { return nil }
        process.terminate()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// The threads of a running service: name, nice value and scheduling policy (5 is SCHED_IDLE), from /proc.
    func threads(_ service: Service) -> [(name: String, nice: Int, policy: Int)] {
        guard let pid = processes[service]?.processIdentifier,
            let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        else { return [] }
        return tasks.compactMap { tid in
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after "(comm)": state is field 3, nice field 19, policy field 41.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return (comm.trimmingCharacters(in: .whitespacesAndNewlines), Int(fields[16]) ?? 0, Int(fields[38]) ?? -1)
        }
    }

    /// Whether the service this stack started is still the process running (not exited, not restarted).
    func isRunning(_ service: Service) -> Bool {
        if service == .nginx { return frontEndPID.map { kill($0, 0) == 0 } ?? false }
        return processes[service]?.isRunning ?? false
    }

    /// kill -9: no chance to clean up.
    func crash(_ service: Service) {
        if service == .nginx, let pid = frontEndPID {
            frontEndPID = nil
            kill(-pid, SIGKILL)
            _ = Self.reap(pid, timeout: 10)
            return
        }
        guard let process = processes.removeValue(forKey: service) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stopAll() {
        for service in [Service.nginx, .workfcgi, .deliveryd] { stop(service, timeout: 10) }
    }

    /// Each front end in the foreground, as the README starts it by hand (Apache and lighttpd drop to
    /// www-data themselves when started as root; Caddy does not, so root starts it as caddy).
    /// posix_spawn, not Foundation's Process: a child of Process inherits the test runner's blocked
    /// signals (Apache then never saw SIGTERM), and Process can miss the exit of a parent whose workers
    /// outlive it. Here every signal is unblocked and default, and the server gets its own process group,
    /// so that stopping it also ends workers it leaves behind.
    private func launchFrontEnd() throws {
        var arguments: [String]
        var env = environment.merging(serviceSettings[.nginx] ?? [:]) { _, own in own }
        var executable = frontEnd.binary
        switch frontEnd {
        case .nginx:
            arguments = ["-p", directory.path, "-c", frontEnd.config, "-g", "daemon off;"]
        case .apache:
            arguments = ["-d", directory.path, "-f", frontEnd.config, "-DFOREGROUND"]
        case .lighttpd:
            arguments = ["-D", "-f", frontEnd.config]
        case .caddy:
            arguments = ["run", "--adapter", "caddyfile", "--config", frontEnd.config]
            env["HOME"] = directory.appendingPathComponent("caddy-home").path
            if geteuid() == 0 {
                arguments = ["--reuid=caddy", "--regid=caddy", "--init-groups", executable] + arguments
                executable = "/usr/bin/setpriv"
            }
        }
        frontEndPID = try Self.spawn(
            executable, arguments, environment: env, directory: directory.path,
            log: directory.appendingPathComponent(logPath(.nginx)).path)
    }

    private func stopFrontEnd(timeout: Double) -> Int32? {
        guard let pid = frontEndPID else { return nil }
        frontEndPID = nil
        kill(pid, frontEnd.stopSignal)
        let status = Self.reap(pid, timeout: timeout)
        if status == nil {
            kill(-pid, SIGKILL)
            _ = Self.reap(pid, timeout: 10)
        }
        kill(-pid, SIGKILL)  // workers still in the group, if any
        return status
    }

    /// Runs `executable` in `directory` under umask 077, with stdin from /dev/null and stdout and stderr
    /// appended to `log` (owner only, like the daemons' logs).
    static func spawn(_ executable: String, _ arguments: [String], environment: [String: String], directory: String, log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        // Through sh (glibc's posix_spawn_file_actions_addchdir_np is not visible to Swift), which execs in
        // place: the folder, and umask 077 for the server's logs and pid file, as the README starts it.
        let script = #"cd "$0" && umask 077 && exec "$@""#
        let argv = (["/bin/sh", "-c", script, directory, executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
        guard rc == 0 else { throw Failure(description: "cannot run \(executable): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Waits up to `timeout` seconds for `pid` to exit; its exit status, or nil while it still runs.
    static func reap(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            if r < 0 && errno != EINTR { return -1 }  // not our child any more: gone
            guard Date() < deadline else { return nil }
            usleep(20_000)
        }
    }

    /// A service's stdout and stderr, relative to the stack's folder (the front end's under its own name).
    private func logPath(_ service: Service) -> String {
        "run/\(service == .nginx ? frontEnd.rawValue : service.rawValue).log"
    }

    func log(_ service: Service) -> String {
        var files = [logPath(service)]
        if service == .nginx, let errorLog = frontEnd.errorLog, frontEnd != .nginx { files.append(errorLog) }
        return files.compactMap { try? String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8) }.joined()
    }

    /// What `waitFor` throws when its condition does not come true in time.
    struct Timeout: Error, CustomStringConvertible { var description: String }
    /// A set-up step that failed (a socket, a process, a config line): not a wait that ran out.
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// POSTs an /async job and returns its request id; throws unless the answer is 202.
    func submit(_ body: String) throws -> String {
        let response = try HTTPClient().postJSON(baseURL + "/async", body)
        guard response.status == 202, let id = response.json?["request_id"] as? String else {
            throw Failure(description: "not accepted (\(response.status)): \(response.text)")
        }
        return id
    }

    /// GET /requests/{id} as JSON.
    func record(_ id: String) throws -> [String: Any] {
        try HTTPClient().get(baseURL + "/requests/\(id)").json ?? [:]
    }

    /// The delivery part of GET /requests/{id}: status, error and the attempts.
    func delivery(_ id: String) throws -> [String: Any] {
        try record(id)["delivery"] as? [String: Any] ?? [:]
    }

    /// The HTTP status of each recorded delivery attempt, in order (nil where no response came).
    func attemptStatuses(_ id: String) throws -> [Int?] {
        (try delivery(id)["attempts"] as? [[String: Any]] ?? []).map { $0["http_status"] as? Int }
    }

    func waitForStatus(_ id: String, _ status: String, timeout: Double = 20) throws {
        try waitFor("\(id) to be \(status)", timeout: timeout) { (try? record(id))?["status"] as? String == status }
    }

    func waitFor(_ what: String, timeout: Double = 20, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else {
                throw Timeout(
                    description: "timed out waiting for \(what)\nworkfcgi: \(log(.workfcgi).suffix(600))\ndeliveryd: \(log(.deliveryd).suffix(600))\n\(frontEnd): \(log(.nginx).suffix(600))")
            }
            usleep(20_000)
        }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                guard bind(fd, p, length) == 0 else { return -1 }
                return getsockname(fd, p, &length)
            }
        }
        guard bound == 0 else { throw Failure(description: "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

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
        guard rc == 0 else { throw Failure(description: "cannot run \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
