import Foundation

/// How an answer is counted in the report's rates over time: answers (2xx) apart from the two refusals
/// the stack makes on purpose (429 from nginx's rate limit, 503 from workfcgi's bounds) and everything else.
enum StatusClass: Int, CaseIterable, Sendable {
    case success = 0, limited, unavailable, other

    init(_ kind: Outcome.Kind) {
        switch kind {
        case .success: self = .success
        case .refused(let status, _, _) where (200...299).contains(status): self = .success
        case .refused(429, _, _): self = .limited
        case .refused(503, _, _): self = .unavailable
        case .refused, .timeout, .connectionError: self = .other
        }
    }

    var label: String {
        switch self {
        case .success: "2xx"
        case .limited: "429"
        case .unavailable: "503"
        case .other: "other"
        }
    }

    var color: String {
        switch self {
        case .success: "#2b8a3e"
        case .limited: "#f08c00"
        case .unavailable: "#e03131"
        case .other: "#495057"
        }
    }
}

/// Every outcome counted in the second it ended, by class: exact (never thinned like the scatter's points).
struct RateBuckets: Sendable, Equatable {
    /// counts[second][class]
    private(set) var counts: [[Int]] = []

    mutating func add(_ kind: StatusClass, at seconds: Double) {
        let i = max(0, Int(seconds.rounded(.down)))
        while counts.count <= i { counts.append(Array(repeating: 0, count: StatusClass.allCases.count)) }
        counts[i][kind.rawValue] += 1
    }

    func count(_ kind: StatusClass) -> Int { counts.reduce(0) { $0 + $1[kind.rawValue] } }

    /// Per second of the run, averaged over buckets `width` seconds wide (a long run stays a readable curve):
    /// (start of the bucket in seconds, rate per class).
    func rates(width: Int) -> [(at: Double, perSecond: [Double])] {
        let width = max(1, width)
        return stride(from: 0, to: counts.count, by: width).map { start in
            let slice = counts[start..<min(start + width, counts.count)]
            let sums = StatusClass.allCases.map { c in slice.reduce(0) { $0 + $1[c.rawValue] } }
            // The last bucket may be shorter than `width`: its mean is over the seconds it has.
            return (Double(start), sums.map { Double($0) / Double(slice.count) })
        }
    }

    /// About 120 points across the chart, whatever the run's length.
    static func width(forSeconds seconds: Int) -> Int { max(1, Int((Double(seconds) / 120).rounded(.up))) }
}

/// Axis ticks at 1, 2 or 5 times a power of ten, about `target` of them from 0 to at least `maximum`.
enum Axis {
    static func step(_ maximum: Double, target: Int = 6) -> Double {
        guard maximum > 0, maximum.isFinite else { return 1 }
        let raw = maximum / Double(max(1, target))
        let power = pow(10, floor(log10(raw)))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
    }

    /// 0, step, 2·step, ... up to the first tick at or past `maximum`.
    static func ticks(_ maximum: Double, target: Int = 6) -> [Double] {
        let step = step(maximum, target: target)
        let n = max(1, Int((maximum / step).rounded(.up)))
        return (0...n).map { Double($0) * step }
    }

    /// A tick's label: no decimals on whole numbers, else as few as the step needs.
    static func label(_ value: Double, unit: String = "") -> String {
        // Within a hair of a round value, not exactly: 3 × 0.2 is 0.6000000000000001 in binary.
        func whole(_ v: Double) -> Bool { abs(v - v.rounded()) < 1e-9 * max(1, abs(v)) }
        let text = String(format: whole(value) ? "%.0f" : whole(value * 10) ? "%.1f" : "%.2f", value)
        return unit.isEmpty ? text : "\(text) \(unit)"
    }
}

/// What the report says about the run itself: when (UTC), against what, which loadgen, with which options.
struct RunInfo: Sendable, Equatable {
    var started: Date
    var target: String
    var version: String
    /// The command line as given (loadgen's arguments), and what they came to with the defaults.
    var arguments: [String]
    var effective: String

    /// ISO 8601 in UTC to the second: the date an analysis quotes.
    var startedText: String {
        var t = time_t(started.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// The arguments as a shell would take them back, the webhook secret masked (a report gets passed around).
    var commandLine: String {
        var args = arguments
        for i in args.indices {
            if args[i].hasPrefix("--secret=") { args[i] = "--secret=(masked)" }
            if args[i] == "--secret", i + 1 < args.count { args[i + 1] = "(masked)" }
        }
        return (["loadgen"] + args).map { arg in
            arg.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,@%+".contains($0) } && !arg.isEmpty
                ? arg : "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}
