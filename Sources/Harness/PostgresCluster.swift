import CSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL 15 for the tests: its own cluster (initdb) in a temporary folder, listening only on
/// a unix socket there, run as an unprivileged user (PostgreSQL refuses root: as root the tests run it as
/// `postgres`, else as themselves). One per test process, started on first use; a watcher outside the
/// process group stops it and removes the folder within a second of the process ending, however it ends.
public final class PostgresCluster: Sendable {
    public let directory: String
    private let runAs: [String]
    private static let bin = "/usr/lib/postgresql/15/bin"

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The process's cluster, started on first use.
    public static func shared() throws -> PostgresCluster {
        try started.get()
    }

    private static let started = Result { try PostgresCluster() }

    /// A cluster of the caller's own, for a test that stops and starts the server under a running stack
    /// without disturbing the other tests on the shared one. `remove()` ends it (the watcher also does, when
    /// the process ends).
    public static func privateCluster() throws -> PostgresCluster {
        try PostgresCluster()
    }

    private init() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.bin + "/initdb") else {
            throw Failure(description: "\(Self.bin)/initdb is missing: scripts/setup --for-tests installs postgresql-15")
        }
        directory = NSTemporaryDirectory() + "workfcgi-pg-" + UUID().uuidString.prefix(8)
        guard mkdir(directory, 0o700) == 0 else { throw Failure(description: "mkdir \(directory): \(String(cString: strerror(errno)))") }
        if geteuid() == 0 {
            guard let user = getpwnam("postgres") ?? getpwnam("nobody") else { throw Failure(description: "no postgres or nobody user") }
            chown(directory, user.pointee.pw_uid, user.pointee.pw_gid)
            runAs = ["/usr/bin/setpriv", "--reuid=\(user.pointee.pw_uid)", "--regid=\(user.pointee.pw_gid)", "--init-groups"]
        } else {
            runAs = []
        }
        try run([Self.bin + "/initdb", "-D", directory + "/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        // The watcher: in its own session, so a signal to the test's process group does not take it along.
        let stop = (runAs + [Self.bin + "/pg_ctl", "-D", directory + "/data", "stop", "-m", "immediate"]).joined(separator: " ")
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        watcher.arguments = [
            "/bin/sh", "-c", "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf '\(directory)'",
        ]
        watcher.standardOutput = FileHandle.nullDevice
        watcher.standardError = FileHandle.nullDevice
        try watcher.run()
        try start()
    }

    /// Starts the server (again, after `stop()`); returns once it accepts connections.
    public func start() throws {
        try run([
            Self.bin + "/pg_ctl", "-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "30",
            "-o", "-k \(directory) -c listen_addresses='' -c max_connections=300", "start",
        ])
    }

    /// How `stop` ends the server (pg_ctl's `-m`).
    public enum StopMode: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Sessions are ended with an error, a checkpoint is written, then the server exits: an operator's stop.
        case fast
        /// Every process is killed at once, no checkpoint; the next start replays the WAL: a crash.
        case immediate
        public var description: String { rawValue }
    }

    /// Stops the server; `immediate` (the default) cuts connections at once, as when a database host goes down.
    public func stop(_ mode: StopMode = .immediate) throws {
        try run([Self.bin + "/pg_ctl", "-D", directory + "/data", "-w", "-t", "30", "stop", "-m", mode.rawValue])
    }

    /// Stops the server and deletes its folder (a private cluster, once its test is done).
    public func remove() {
        try? stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A fresh schema of its own for one test, and the connection URI that works in it.
    public func freshDatabase() throws -> String {
        let schema = "t_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        try run([Self.bin + "/psql", "-X", "-q", "-h", directory, "-U", "postgres", "-d", "postgres", "-c", "CREATE SCHEMA \(schema)"])
        return url(searchPath: schema)
    }

    /// The rows `sql` returns (psql's unaligned output: one line a row, columns split by `|`), run as the
    /// superuser: for what a test does to the server itself (pg_stat_activity, pg_terminate_backend).
    public func query(_ sql: String) throws -> [String] {
        try run([Self.bin + "/psql", "-X", "-q", "-A", "-t", "-h", directory, "-U", "postgres", "-d", "postgres", "-c", sql])
            .split(separator: "\n").map(String.init)
    }

    /// `postgresql:///postgres?host=<folder>&user=postgres`, with a search_path when given.
    public func url(searchPath: String? = nil) -> String {
        let host = directory.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? directory
        return "postgresql:///postgres?host=\(host)&user=postgres" + (searchPath.map { "&options=-csearch_path%3D\($0)" } ?? "")
    }

    /// Runs a PostgreSQL tool as the cluster's user; throws with its output when it fails.
    /// posix_spawn and waitpid, not Foundation's Process: Process learns of the exit when a socket it leaves
    /// open in the child closes, and the server `pg_ctl start` leaves behind inherits it, so waitUntilExit
    /// never returned (the store tests hung on their first PostgreSQL test). Output goes to a file, and the
    /// tool gets no other descriptor of ours, for the same reason.
    @discardableResult
    private func run(_ arguments: [String]) throws -> String {
        let command = runAs + arguments
        let outputPath = directory + "/tool-\(UUID().uuidString.prefix(8)).out"
        let output = open(outputPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw Failure(description: "open \(outputPath): \(String(cString: strerror(errno)))") }
        defer {
            close(output)
            unlink(outputPath)
        }
        let input = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(input) }
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: Int32 = 0
        let rc = workfcgi_spawn(command[0], argv, environ, input, output, output, directory, &pid)
        guard rc == 0 else { throw Failure(description: "posix_spawn \(command[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        let exitCode = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard exitCode == 0 else { throw Failure(description: "\(arguments.first ?? "") exited \(exitCode): \(text)") }
        return text
    }
}
