import Foundation
import JSON
import Logging
import Synchronization

/// WORKFCGI_LOG_FORMAT=json: one JSON object per line on stderr — time, level, label, message and the
/// metadata as fields — for journald's or a log shipper's parsers.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    /// One line at a time across threads: a line is one write.
    private static let lock = Mutex<Void>(())

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "time": .string(Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
            "level": .string(event.level.rawValue), "label": .string(label), "message": .string(event.message.description),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) where fields[key] == nil {
            fields[key] = .string(value.description)
        }
        let line = Array((JSONValue.object(fields).text + "\n").utf8)
        Self.lock.withLock { _ in
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }
}
