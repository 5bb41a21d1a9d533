import Foundation
import Harness

#if canImport(Glibc)
import Glibc
#endif

/// The real stack for one test: deliveryd, workfcgi and nginx (with the repository's nginx/site.conf,
/// only the port and rate limit changed) in a fresh temporary folder, talking over loopback.
final class Stack: @unchecked Sendable {
    enum Service: String, CaseIterable { case deliveryd, workfcgi, nginx }

    let directory: URL
    let port: Int
    let environment: [String: String]
    /// Settings for one service only, over `environment` (e.g. two daemons given different values).
    let serviceSettings: [Service: [String: String]]
    /// A command that workfcgi and deliveryd are started through (e.g. into a private mount namespace).
    let wrapper: [String]
    private var processes: [Service: Process] = [:]

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
        serviceSettings: [Service: [String: String]] = [:]
    ) throws {
        self.wrapper = wrapper
        self.serviceSettings = serviceSettings
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
        for (k, v) in settings { env[k] = v }
        environment = env
    }

    deinit {
        stopAll()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts the given services (all by default) and waits until nginx answers /healthz through workfcgi.
    func start(_ services: [Service] = Service.allCases) throws {
        for service in services { try launch(service) }
        if services.contains(.workfcgi) {
            try waitFor("workfcgi sockets") {
                FileManager.default.fileExists(atPath: self.runDirectory + "/api.sock")
                    && FileManager.default.fileExists(atPath: self.runDirectory + "/sync.sock")
            }
        }
        if services.contains(.nginx) && services.contains(.workfcgi) {
            let client = HTTPClient(timeoutSeconds: 2)
            try waitFor("nginx → workfcgi") { (try? client.get(self.baseURL + "/healthz"))?.status == 200 }
        }
        if services.contains(.deliveryd) {
            try waitFor("deliveryd doorbell") { FileManager.default.fileExists(atPath: self.runDirectory + "/deliveryd.sock") }
        }
    }

    func launch(_ service: Service) throws {
        let process = Process()
        let log = directory.appendingPathComponent("run/\(service.rawValue).log")
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
        switch service {
        case .nginx:
            process.executableURL = URL(fileURLWithPath: Self.nginxBinary)
            process.arguments = ["-p", directory.path, "-c", "nginx/site.conf", "-g", "daemon off;"]
        default:
            let binary = Self.binDirectory.appendingPathComponent(service.rawValue)
            if let first = wrapper.first {
                process.executableURL = URL(fileURLWithPath: first)
                process.arguments = Array(wrapper.dropFirst()) + [binary.path]
            } else {
                process.executableURL = binary
            }
        }
        try process.run()
        processes[service] = process
    }

    /// SIGTERM and wait (up to `timeout` seconds); returns the exit status, or nil when it had to be killed.
    @discardableResult
    func stop(_ service: Service, timeout: Double = 15) -> Int32? {
        guard let process = processes.removeValue(forKey: service), process.isRunning else { return nil }
        if service == .nginx { kill(process.processIdentifier, SIGQUIT) } else { process.terminate() }
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

    /// kill -9: no chance to clean up.
    func crash(_ service: Service) {
        guard let process = processes.removeValue(forKey: service) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stopAll() {
        for service in [Service.nginx, .workfcgi, .deliveryd] { stop(service, timeout: 10) }
    }

    func log(_ service: Service) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("run/\(service.rawValue).log"), encoding: .utf8)) ?? ""
    }

    struct Timeout: Error, CustomStringConvertible { var description: String }

    /// POSTs an /async job and returns its request id; throws unless the answer is 202.
    func submit(_ body: String) throws -> String {
        let response = try HTTPClient().postJSON(baseURL + "/async", body)
        guard response.status == 202, let id = response.json?["request_id"] as? String else {
            throw Timeout(description: "not accepted (\(response.status)): \(response.text)")
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
                    description: "timed out waiting for \(what)\nworkfcgi: \(log(.workfcgi).suffix(600))\ndeliveryd: \(log(.deliveryd).suffix(600))\nnginx: \(log(.nginx).suffix(600))")
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
        guard bound == 0 else { throw Timeout(description: "no free port") }
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
        guard rc == 0 else { throw Timeout(description: "cannot run \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
