import Foundation
import Logging

/// What every executable does first: read the settings (or exit 2 naming the bad variable), set up
/// logging to stderr at the configured level, and turn SIGTERM/SIGINT into a stop request.
public enum Startup {
    public static func settings(program: String) -> Settings {
        do {
            return try Settings(environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("\(program): configuration error: \(error)\n".utf8))
            exit(2)
        }
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
