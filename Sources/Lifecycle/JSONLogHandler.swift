import Foundation
import JSON
import Logging

/// WORKFCGI_LOG_FORMAT=json: one JSON object per line on stderr — time, level, label, message and the
/// metadata as fields — for journald's or a log shipper's parsers.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "time": .string(LogOutput.now()),
            "level": .string(event.level.rawValue), "label": .string(label), "message": .string(event.message.description),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) where fields[key] == nil {
            fields[key] = .string(value.description)
        }
        LogOutput.write(JSONValue.object(fields).text + "\n")
    }
}
