/// The settings of handler programs (WORKFCGI_HANDLERS_DIR and the WORKFCGI_HANDLER_* limits): read with
/// the rest of `Settings`, kept apart so the handlers' part is one value.
public struct HandlerSettings: Sendable, Equatable {
    /// The folder whose executables are ops; nil: only the built-in ops.
    public var folder: String?
    /// Wall-clock bound of one run: then SIGTERM to its process group, SIGKILL `killGraceSeconds` later.
    public var timeoutSeconds: Double
    /// Per handler name, instead of `timeoutSeconds`.
    public var timeouts: [String: Double]
    /// Resource limits of each run (setrlimit): CPU seconds, address space, open files, processes of the user.
    public var cpuSeconds: Int
    public var memoryBytes: Int64
    public var openFiles: Int
    /// RLIMIT_NPROC counts every process and thread of the service's user (the daemons' own threads too); nil: none.
    public var processes: Int?

    /// Between SIGTERM and SIGKILL at the timeout.
    public static let killGraceSeconds = 2.0

    init(_ env: Reader) throws(ConfigError) {
        let folder = try env.string("HANDLERS_DIR", default: "")
        self.folder = folder.isEmpty ? nil : folder
        timeoutSeconds = try env.duration("HANDLER_TIMEOUT", default: 30, 0.1...86_400)
        var timeouts: [String: Double] = [:]
        for item in try env.list("HANDLER_TIMEOUTS", default: []) {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let seconds = Reader.parseDuration(parts[1]), (0.1...86_400).contains(seconds) else {
                throw ConfigError(
                    variable: Settings.prefix + "HANDLER_TIMEOUTS", message: "must be a list like resize=2m,report=10s, got '\(item)'")
            }
            timeouts[parts[0]] = seconds
        }
        self.timeouts = timeouts
        cpuSeconds = try env.int("HANDLER_CPU", default: 60, 1...86_400)
        memoryBytes = try env.bytes("HANDLER_MEMORY", default: 2 << 30, (16 << 20)...(1 << 44))
        openFiles = try env.int("HANDLER_FILES", default: 256, 16...1_048_576)
        let processes = try env.string("HANDLER_PROCESSES", default: "off")
        if processes == "off" {
            self.processes = nil
        } else {
            self.processes = try env.int("HANDLER_PROCESSES", default: 0, 1...1_000_000)
        }
    }

    /// The bound of one run of `name`.
    public func timeout(for name: String) -> Double { timeouts[name] ?? timeoutSeconds }

    /// The longest bound of any run, the SIGKILL grace included.
    public var longestRunSeconds: Double { (timeouts.values.max().map { max($0, timeoutSeconds) } ?? timeoutSeconds) + Self.killGraceSeconds }
}
