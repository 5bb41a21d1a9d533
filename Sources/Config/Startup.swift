import CSystem
import Foundation
import Logging

/// What every executable does first: read the settings (or exit 2 naming the bad variable), set up
/// logging to stderr at the configured level, and turn SIGTERM/SIGINT into a stop request.
public enum Startup {
    /// Parses the command line shared by the daemons: `--help`, `--version`, `--check-config` (validate the
    /// settings, print them with secrets masked, exit 0 or 2), plus the flags in `extra`, which are returned
    /// when given. Anything else is an error (exit 2), never ignored.
    public static func commandLine(program: String, summary: String, extra: [(flag: String, help: String)] = []) -> Set<String> {
        var given: Set<String> = []
        for argument in CommandLine.arguments.dropFirst() {
            switch argument {
            case "--help", "-h":
                var text = "usage: \(program) [--help] [--version] [--check-config]"
                for (flag, _) in extra { text += " [\(flag)]" }
                text += "\n\n\(summary)\nSettings come from WORKFCGI_* environment variables (README, Configuration).\n\n"
                text += "  --help          show this help and exit\n  --version       print the version and exit\n"
                text += "  --check-config  validate every WORKFCGI_* variable, print the effective settings (secrets masked), exit 0, or 2 when one is invalid\n"
                for (flag, help) in extra { text += "  \(flag.padding(toLength: 15, withPad: " ", startingAt: 0)) \(help)\n" }
                print(text, terminator: "")
                exit(0)
            case "--version":
                print("\(program) \(Settings.version)")
                exit(0)
            case "--check-config":
                given.insert(argument)
            case let flag where extra.contains { $0.flag == flag }:
                given.insert(flag)
            default:
                FileHandle.standardError.write(Data("\(program): unknown argument '\(argument)' (see \(program) --help)\n".utf8))
                exit(2)
            }
        }
        if given.contains("--check-config") {
            let settings = Self.settings(program: program)
            print("\(program): configuration is valid")
            for line in settings.checkConfigLines { print("  \(line)") }
            exit(0)
        }
        return given
    }

    public static func settings(program: String) -> Settings {
        // Whatever this process creates (database, secret file, logs) is owner-only; sockets are opened up
        // explicitly, to exactly who needs them.
        umask(0o077)
        // Two malloc arenas, not eight per core (dozens of pool threads), and freed memory kept up to 16 MiB
        // instead of handed back with madvise after every burst (a sixth of deliveryd's recorder thread).
        _ = workfcgi_tune_malloc(2)
        do {
            return try Settings(environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("\(program): configuration error: \(error)\n".utf8))
            exit(2)
        }
    }

    /// The user nginx's workers run as, when it exists: its uid (a FastCGI peer to accept) and group (the sockets').
    public static func nginxIdentity(_ settings: Settings) -> (uid: uid_t, gid: gid_t)? {
        guard let entry = getpwnam(settings.nginxUser) else { return nil }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    /// Creates the run folder if it is missing, 0710 with nginx's group: nginx can reach the sockets inside
    /// but cannot list or read anything there. An existing folder is left as its owner made it.
    public static func makeRunDirectory(_ path: String, group: gid_t?) throws {
        if FileManager.default.fileExists(atPath: path) { return }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o710)
        if let group { _ = chown(path, uid_t.max, group) }
    }

    /// Holds an exclusive lock on `path` for the rest of the process's life, or exits 1 naming the process
    /// that holds it: a second instance must never take over the first one's sockets or leases. The lock
    /// (flock) goes with the process, even on kill -9, so a stale file never blocks a restart.
    public static func holdInstanceLock(_ path: String, program: String) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            FileHandle.standardError.write(Data("\(program): cannot open lock file \(path): \(String(cString: strerror(errno)))\n".utf8))
            exit(1)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = max(0, pread(fd, &buffer, buffer.count, 0))
            let pid = String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            FileHandle.standardError.write(Data("\(program): already running, pid \(pid.isEmpty ? "?" : pid) (lock \(path))\n".utf8))
            exit(1)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        // Deliberately never closed: closing the descriptor would release the lock.
    }

    public static func bootstrapLogging(_ settings: Settings) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
            return handler
        }
    }

    /// Calls `stop` on SIGTERM or SIGINT. Keep the returned sources alive for as long as that should hold.
    public static func onStopSignal(_ stop: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig in
            // Ignored as a signal, seen as an event: also replaces libfcgi's flag-only SIGTERM handler.
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop(sig) }
            source.resume()
            return source
        }
    }
}
