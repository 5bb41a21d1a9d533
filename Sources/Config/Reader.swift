/// Typed access to `WORKFCGI_*` variables; every failure names the variable and the accepted form.
/// It remembers which variables were asked for, so the settings name each variable exactly once, and what
/// each one came to, written back the way one sets it (`--check-config`).
final class Reader {
    let environment: [String: String]
    private(set) var names: Set<String> = []
    private(set) var effective: [EffectiveSetting] = []

    init(environment: [String: String]) {
        self.environment = environment
    }

    private func raw(_ name: String) -> (full: String, value: String?) {
        let full = Settings.prefix + name
        names.insert(full)
        let value = environment[full].map { $0.trimmingCharacters(in: " \t") }
        return (full, value?.isEmpty == true ? nil : value)
    }

    /// Keeps what `full` came to; a variable read twice (RETENTION: a word, else a duration) keeps the last.
    @discardableResult
    private func noting<T>(_ full: String, _ value: T, set: Bool, _ text: (T) -> String) -> T {
        let entry = EffectiveSetting(name: full, value: text(value), fromEnvironment: set)
        if let i = effective.firstIndex(where: { $0.name == full }) { effective[i] = entry } else { effective.append(entry) }
        return value
    }

    func string(_ name: String, default fallback: String) throws(ConfigError) -> String {
        let (full, value) = raw(name)
        return noting(full, value ?? fallback, set: value != nil) { $0 }
    }

    /// A comma-separated list, each item trimmed; empty items are dropped.
    func list(_ name: String, default fallback: [String]) throws(ConfigError) -> [String] {
        let (full, value) = raw(name)
        let items = value.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: " \t") }.filter { !$0.isEmpty } }
        return noting(full, items ?? fallback, set: value != nil) { $0.joined(separator: ",") }
    }

    func int(_ name: String, default fallback: Int, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let (full, value) = raw(name)
        guard let value else { return noting(full, fallback, set: false) { "\($0)" } }
        guard let n = Int(value), range.contains(n) else {
            throw ConfigError(variable: full, message: "must be an integer from \(range.lowerBound) to \(range.upperBound), got '\(value)'")
        }
        return noting(full, n, set: true) { "\($0)" }
    }

    func double(_ name: String, default fallback: Double, _ range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let (full, value) = raw(name)
        guard let value else { return noting(full, fallback, set: false, SettingText.number) }
        guard let n = Double(value), n.isFinite, range.contains(n) else {
            throw ConfigError(variable: full, message: "must be a number from \(range.lowerBound) to \(range.upperBound), got '\(value)'")
        }
        return noting(full, n, set: true, SettingText.number)
    }

    func bool(_ name: String, default fallback: Bool) throws(ConfigError) -> Bool {
        let (full, value) = raw(name)
        guard let value else { return noting(full, fallback, set: false) { "\($0)" } }
        switch value.lowercased() {
        case "1", "true", "yes", "on": return noting(full, true, set: true) { "\($0)" }
        case "0", "false", "no", "off": return noting(full, false, set: true) { "\($0)" }
        default: throw ConfigError(variable: full, message: "must be true or false, got '\(value)'")
        }
    }

    func duration(_ name: String, default fallback: Double, _ range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let (full, value) = raw(name)
        guard let value else { return noting(full, fallback, set: false, SettingText.duration) }
        guard let seconds = Self.parseDuration(value), range.contains(seconds) else {
            throw ConfigError(
                variable: full,
                message: "must be a duration like 500ms, 2s, 5m or 1h between \(range.lowerBound)s and \(range.upperBound)s, got '\(value)'")
        }
        return noting(full, seconds, set: true, SettingText.duration)
    }

    func durationList(_ name: String, default fallback: [Double]) throws(ConfigError) -> [Double] {
        let (full, value) = raw(name)
        let text = { (list: [Double]) in list.isEmpty ? "none" : list.map(SettingText.duration).joined(separator: ",") }
        guard let value else { return noting(full, fallback, set: false, text) }
        if value == "none" { return noting(full, [], set: true, text) }
        var out: [Double] = []
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            let item = String(part).trimmingCharacters(in: " ")
            guard let seconds = Self.parseDuration(item), seconds >= 0, seconds <= 7 * 86_400 else {
                throw ConfigError(
                    variable: full,
                    message: "must be a comma-separated list of durations (e.g. 5s,5m,30m,2h) or 'none'; '\(item)' is not one")
            }
            out.append(seconds)
        }
        guard out.count <= 30 else {
            throw ConfigError(variable: full, message: "at most 30 retries, got \(out.count)")
        }
        return noting(full, out, set: true, text)
    }

    func portList(_ name: String, default fallback: [ClosedRange<Int>]) throws(ConfigError) -> [ClosedRange<Int>] {
        let (full, value) = raw(name)
        let text = { (list: [ClosedRange<Int>]) in
            list.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
        }
        guard let value else { return noting(full, fallback, set: false, text) }
        var out: [ClosedRange<Int>] = []
        for part in value.split(separator: ",") {
            let bounds = String(part).trimmingCharacters(in: " ").split(separator: "-", maxSplits: 1).map { Int($0) }
            guard bounds.allSatisfy({ $0 != nil && (1...65_535).contains($0!) }),
                let low = bounds.first ?? nil, let high = bounds.last ?? nil, low <= high
            else {
                throw ConfigError(variable: full, message: "must be ports or ranges like 80,443,8000-9999; '\(part)' is not one")
            }
            out.append(low...high)
        }
        return noting(full, out, set: true, text)
    }

    /// A size like `512m`, `2g`, `1048576` (k, m, g, t are powers of 1024; a trailing `b`/`ib` is allowed).
    func bytes(_ name: String, default fallback: Int64, _ range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let (full, value) = raw(name)
        guard let value else { return noting(full, fallback, set: false, SettingText.bytes) }
        var text = value.lowercased()
        for suffix in ["ib", "b"] where text.hasSuffix(suffix) {
            text.removeLast(suffix.count)
            break
        }
        let units: [Character: Int64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
        var factor: Int64 = 1
        if let last = text.last, let unit = units[last] {
            factor = unit
            text.removeLast()
        }
        guard let n = Int64(text), n >= 0, n <= range.upperBound / factor, range.contains(n * factor) else {
            throw ConfigError(
                variable: full, message: "must be a size like 512m or 2g between \(range.lowerBound) and \(range.upperBound) bytes, got '\(value)'")
        }
        return noting(full, n * factor, set: true, SettingText.bytes)
    }

    /// "250ms", "2s", "1.5s", "5m", "2h", "1d" → seconds.
    static func parseDuration(_ text: String) -> Double? {
        let units: [(suffix: String, factor: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let n = Double(text.dropLast(suffix.count)), n.isFinite, n >= 0 else { return nil }
            return n * factor
        }
        return nil
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
