import Config
import CSystem
import Foundation
import Logging
import Synchronization

/// A running daemon, as its `start` closure hands it to `Daemon.run`.
public struct Service: Sendable {
    /// Called once, from a signal handler's queue, when SIGTERM or SIGINT arrives: stop taking new work.
    public var stop: @Sendable () -> Void
    /// Blocks until the service has stopped after `stop`, finishing what it had in hand.
    public var wait: @Sendable () -> Void
    /// What the start-up line logs: sockets, database, sizes.
    public var summary: [String: String]
    /// Proves the service's essential loop still makes progress (workfcgi: a write through the group-commit
    /// writer; deliveryd: the claim loop went round recently). May block: a hung loop blocks it, and then
    /// no WATCHDOG=1 is sent, so systemd restarts the daemon.
    public var progressing: @Sendable () -> Bool
    /// A one-line state for `systemctl status` (STATUS=).
    public var status: @Sendable () -> String

    public init(
        summary: [String: String], stop: @escaping @Sendable () -> Void, wait: @escaping @Sendable () -> Void,
        progressing: @escaping @Sendable () -> Bool = { true }, status: @escaping @Sendable () -> String = { "running" }
    ) {
        self.summary = summary
        self.stop = stop
        self.wait = wait
        self.progressing = progressing
        self.status = status
    }
}

/// The process frame both daemons share: settings (or exit 2 naming the bad variable), `--check-config`,
/// logging, start (or exit 1), readiness and stop signals, the wait, exit 0. Every process-wide side effect
/// lives here, not in the libraries: umask, malloc tuning, signal dispositions.
public enum Daemon {
    public static func run(
        program: String, checkConfig: Bool, start: (Settings, Logger) throws -> Service
    ) -> Never {
        let settings = settings(program: program)
        if checkConfig {
            // Settings already validated the same environment, so this cannot fail here.
            let effective = (try? Settings.effective(environment: ProcessInfo.processInfo.environment)) ?? []
            print("\(program): configuration is valid")
            print(Settings.checkConfigText(effective))
            exit(0)
        }
        bootstrapLogging(settings)
        let logger = Logger(label: program)
        // A receiver or client that hangs up must cost an EPIPE on that socket, not the process.
        signal(SIGPIPE, SIG_IGN)
        let service: Service
        do {
            service = try start(settings, logger)
        } catch let service as InstalledService {
            // The checkout is linked to the installed service: when that service's own `program` runs, asking
            // for it again is answered, not refused (the README's commands work in either order).
            guard let pid = service.runningPID(program) else {
                logger.critical("cannot start", metadata: ["error": "\(service)"])
                exit(1)
            }
            logger.notice("\(service.alreadyRunning(program, pid: pid))")
            exit(0)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            exit(1)
        }
        let systemd = SystemdNotifier()
        let stopping = Flag()
        // After start: workfcgi's FCGX_Init installs libfcgi's flag-only SIGTERM handler, which this replaces.
        let signals = onStopSignal { sig in
            logger.info("stopping: finishing what is in hand", metadata: ["signal": "\(sig)"])
            stopping.set()
            systemd.send("STOPPING=1\nSTATUS=stopping: finishing what is in hand")
            service.stop()
        }
        logger.info("started", metadata: service.summary.mapValues { .string($0) })
        // Ready only now: sockets listen, the database is open and migrated.
        systemd.send("READY=1\nSTATUS=\(service.status())\nMAINPID=\(getpid())")
        if systemd.enabled { keepSystemdInformed(systemd, service: service, stopping: stopping, logger: logger) }
        service.wait()
        withExtendedLifetime(signals) {}
        logger.info("stopped")
        exit(0)
    }

    /// STATUS= every few seconds and, when systemd's watchdog is on, WATCHDOG=1 at half its period, but
    /// only after the service proved progress: a hung writer or claim loop gets the daemon restarted.
    static func keepSystemdInformed(
        _ systemd: SystemdNotifier, service: Service, stopping: Flag, logger: Logger
    ) {
        let period = min(systemd.watchdogInterval ?? 5, 5)
        Thread {
            workfcgi_name_thread("systemd-notify")
            while !stopping.isSet {
                Thread.sleep(forTimeInterval: period)
                if stopping.isSet { return }
                guard service.progressing() else {
                    logger.error("no progress: not telling systemd's watchdog that all is well")
                    continue
                }
                systemd.send((systemd.watchdogInterval != nil ? "WATCHDOG=1\n" : "") + "STATUS=\(service.status())")
            }
        }.start()
    }

    /// Reads the settings, or exits 2 naming the bad variable. Also sets what every process of this
    /// project creates to owner-only: sockets are opened up explicitly, to exactly who needs them.
    public static func settings(program: String) -> Settings {
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

    static func bootstrapLogging(_ settings: Settings) {
        let level: Logger.Level =
            switch settings.logLevel {
            case .trace: .trace
            case .debug: .debug
            case .info: .info
            case .notice: .notice
            case .warning: .warning
            case .error: .error
            case .critical: .critical
            }
        LoggingSystem.bootstrap { label in
            switch settings.logFormat {
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            case .text:
                var handler = TextLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }

    /// Calls `reload` on SIGHUP (the handlers folder is read again); the source lives as long as the process.
    public static func onReloadSignal(_ reload: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler(handler: reload)
        source.resume()
        // Never cancelled: leaked on purpose, like a signal handler.
        _ = Unmanaged.passRetained(source as AnyObject)
    }

    /// Calls `stop` on SIGTERM or SIGINT. Keep the returned sources alive for as long as that should hold.
    static func onStopSignal(_ stop: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
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

/// A flag set once, read from any thread.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}
