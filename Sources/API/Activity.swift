import JSON

/// The /sync computations running now, each with its request id, op and start: a table as small as the
/// semaphore (a computation holds a slot while it is in the table), so /status and /ui read it in one lock.
struct SyncInFlight: Sendable {
    struct Entry: Sendable, Equatable {
        var requestID: String
        var op: String
        /// The handler's name for a handler request.
        var handler: String?
        var startedAt: Int64
    }

    let capacity: Int
    private var entries: [Int: Entry] = [:]
    private var next = 0

    init(capacity: Int) { self.capacity = capacity }

    /// A token for `finish`, or nil when the table is full (it cannot be while the semaphore bounds callers;
    /// the table still never grows past its capacity).
    mutating func start(_ entry: Entry) -> Int? {
        guard entries.count < capacity else { return nil }
        next &+= 1
        entries[next] = entry
        return next
    }

    mutating func finish(_ token: Int?) {
        if let token { entries[token] = nil }
    }

    /// Oldest first.
    var running: [Entry] { entries.values.sorted { ($0.startedAt, $0.requestID) < ($1.startedAt, $1.requestID) } }
}

/// Counts per minute over the last hour, in a ring of 60 buckets: what /ui's graphs draw. In memory, so they
/// start empty when workfcgi starts. Pure: the caller passes the time.
struct MinuteCounts<Key: Hashable & Comparable & Sendable>: Sendable {
    static var minutes: Int { 60 }
    private var buckets: [(minute: Int64, counts: [Key: Int])] = Array(repeating: (-1, [:]), count: 60)

    init() {}

    static func minute(_ millis: Int64) -> Int64 { millis >= 0 ? millis / 60_000 : (millis - 59_999) / 60_000 }

    mutating func add(_ key: Key, at millis: Int64, count: Int = 1) {
        let m = Self.minute(millis)
        let i = Int(((m % 60) + 60) % 60)
        if buckets[i].minute != m { buckets[i] = (m, [:]) }
        buckets[i].counts[key, default: 0] += count
    }

    /// The 60 minutes up to and including now's, oldest first: each minute's start (Unix ms) and counts (empty
    /// for a minute nothing happened in, or one older than the ring holds).
    func series(now: Int64) -> [(start: Int64, counts: [Key: Int])] {
        let current = Self.minute(now)
        return (current - 59...current).map { m in
            let b = buckets[Int(((m % 60) + 60) % 60)]
            return (m * 60_000, b.minute == m ? b.counts : [:])
        }
    }

    /// Every key seen in the hour, sorted.
    func keys(now: Int64) -> [Key] {
        Array(Set(series(now: now).flatMap { $0.counts.keys })).sorted()
    }
}

/// What the slow log says of a request's parameters: never the body, only its shape, bounded. Top-level
/// input fields by name, a short scalar as it is (JSON-escaped, so no byte from outside reaches the log
/// raw), a long string, array or object by its size; and the query string the same way.
enum SlowLog {
    static let maxFields = 16
    static let maxText = 32
    static let maxTotal = 512

    static func parameters(input: JSONValue?, query: [String: String]) -> String {
        var parts: [String] = []
        if case .object(let fields)? = input {
            for key in fields.keys.sorted().prefix(maxFields) {
                parts.append("\(quoted(key))=\(shape(fields[key]!))")
            }
            if fields.count > maxFields { parts.append("(+\(fields.count - maxFields) fields)") }
        } else if let input {
            parts.append("input=\(shape(input))")
        }
        for key in query.keys.sorted().prefix(maxFields) {
            parts.append("?\(quoted(key))=\(shape(.string(query[key]!)))")
        }
        var text = parts.joined(separator: " ")
        if text.utf8.count > maxTotal {
            // Cut on a character boundary; every part is already escaped, so the cut cannot open an escape.
            var cut = ""
            for c in text {
                if cut.utf8.count + c.utf8.count > maxTotal - 3 { break }
                cut.append(c)
            }
            text = cut + "..."
        }
        return text
    }

    static func shape(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number: value.text
        // Every string by its size, however short: a short string is exactly what a secret looks like
        // (an API key, a password in input_data), and the log is read by more people than the API.
        case .string(let s): "string(\(s.utf8.count) bytes)"
        case .array(let a): "array(\(a.count))"
        case .object(let o): "object(\(o.count))"
        }
    }

    /// A JSON string literal, then anything outside printable ASCII written as \u escapes: a log line of
    /// plain ASCII whatever was sent.
    static func quoted(_ s: String) -> String {
        let short = s.utf8.count <= maxText ? s : String(decoding: s.utf8.prefix(maxText), as: UTF8.self) + "..."
        var out = "\""
        for u in short.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case " "..."~": out.unicodeScalars.append(u)
            default:
                for unit in String(u).utf16 { out += "\\u" + String(repeating: "0", count: 4 - String(unit, radix: 16).count) + String(unit, radix: 16) }
            }
        }
        return out + "\""
    }
}
