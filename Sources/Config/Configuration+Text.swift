/// One setting as `--check-config` shows it: the variable, its value written the way one sets it
/// (`2s`, `4g`, `80,443,8000-9999`), and whether the environment set it or it is the default.
public struct EffectiveSetting: Sendable, Equatable {
    public var name: String
    public var value: String
    public var fromEnvironment: Bool

    /// Variables whose value is never printed (a database URL may carry a password).
    static let secrets: Set<String> = [
        Settings.prefix + "WEBHOOK_SECRET", Settings.prefix + "WEBHOOK_SECRET_PREVIOUS", Settings.prefix + "DATABASE_URL",
    ]

    /// `NAME=value`, a line an environment file (or systemd's `EnvironmentFile=`) takes as it is; a secret
    /// that is set shows as `(masked)`.
    public var line: String {
        "\(name)=\(Self.secrets.contains(name) && !value.isEmpty ? "(masked)" : value)"
    }
}

extension Settings {
    /// Every setting in the order the settings read them, with its effective value and where it came from.
    /// Throws as `init(environment:)` does.
    public static func effective(environment: [String: String]) throws(ConfigError) -> [EffectiveSetting] {
        let reader = Reader(environment: environment)
        _ = try Settings(reader: reader)
        // The older one-user name is shown only when someone still sets it.
        return reader.effective.filter { $0.fromEnvironment || $0.name != prefix + "NGINX_USER" }
    }

    /// What `--check-config` prints after its first line: the variables the environment set, then the
    /// defaults, each as `NAME=value`.
    public static func checkConfigText(_ settings: [EffectiveSetting]) -> String {
        let set = settings.filter(\.fromEnvironment), defaults = settings.filter { !$0.fromEnvironment }
        var lines = ["# set in the environment" + (set.isEmpty ? ": none" : "")] + set.map(\.line)
        lines += ["# defaults (not set)"] + defaults.map(\.line)
        return lines.joined(separator: "\n")
    }
}

/// Typed values written back in the syntax the settings read.
enum SettingText {
    /// The largest unit that gives a whole number: 2 → `2s`, 0.25 → `250ms`, 604800 → `7d`; else seconds (`1.5s`).
    static func duration(_ seconds: Double) -> String {
        for (suffix, factor) in [("d", 86_400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)] where seconds >= factor {
            let n = seconds / factor
            if n == n.rounded() { return "\(Int(n))\(suffix)" }
        }
        let ms = seconds * 1000
        if ms == ms.rounded() { return "\(Int(ms))ms" }
        return number(seconds) + "s"
    }

    /// The largest power-of-1024 unit that divides exactly: 4 GiB → `4g`, 1536 → `3k`... else plain bytes.
    static func bytes(_ n: Int64) -> String {
        for (suffix, shift) in [("t", 40), ("g", 30), ("m", 20), ("k", 10)] where n != 0 && n % (Int64(1) << shift) == 0 {
            return "\(n >> shift)\(suffix)"
        }
        return "\(n)"
    }

    /// `0.25`, `1`, never `1.0` or an exponent for the values settings take.
    static func number(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? "\(Int64(x))" : "\(x)"
    }
}
