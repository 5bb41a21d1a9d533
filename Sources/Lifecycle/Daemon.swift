import Config
import CSystem
import Foundation
import Logging

/// A running daemon, as its `start` closure hands it to `Daemon.run`.
public struct Service: Sendable {
    /// Called once, from a signal handler's queue, when SIGTERM or SIGINT arrives: stop taking new work.
    public var stop: @Sendable () -> Void
    /// Blocks until the service has stopped after `stop`, finishing what it had in hand.
    public var wait: @Sendable () -> Void
    /// What the start-up line logs: sockets, database, sizes.
    public var summary: [String: String]

    public init(summary: [String: String], stop: @escaping @Sendable () -> Void, wait: @escaping @Sendable () -> Void) {
        self.summary = summary
        self.stop = stop
        self.wait = wait
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
            print("\(program): configuration is valid")
            for line in settings.checkConfigLines { print("  \(line)") }
            exit(0)
        }
        bootstrapLogging(settings)
        let logger = Logger(label: program)
        // A receiver or client that hangs up must cost an EPIPE on that socket, not the process.
        signal(SIGPIPE, SIG_IGN)
        let service: Service
        do {
            service = try start(settings, logger)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            exit(1)
        }
        // After start: workfcgi's FCGX_Init installs libfcgi's flag-only SIGTERM handler, which this replaces.
        let signals = onStopSignal { sig in
            logger.info("stopping: finishing what is in hand", metadata: ["signal": "\(sig)"])
            service.stop()
        }
        logger.info("started", metadata: service.summary.mapValues { .string($0) })
        service.wait()
        withExtendedLifetime(signals) {}
        logger.info("stopped")
        exit(0)
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
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
            return handler
        }
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
