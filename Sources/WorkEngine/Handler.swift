import JSON

/// Work done by a program outside this process: a handler (an executable in WORKFCGI_HANDLERS_DIR). The
/// vocabulary lives here, beside the built-in ops, so the store, the API and deliveryd share it; running one
/// is the `Handlers` library's job, handed to `WorkEngine` as a `HandlerRunning`.
public enum HandlerName {
    /// Names are file names and op names at once: lower-case letters, digits, `_` and `-`, starting with a
    /// letter or digit, so no name is hidden (`.`), an option (`-`) or a path.
    public static let bytes = 1...64

    public static func isValid(_ name: String) -> Bool {
        let utf8 = Array(name.utf8)
        guard bytes.contains(utf8.count), let first = utf8.first, isLowerAlnum(first) else { return false }
        return utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
    }
}

/// What one run of a handler did: kept with the request (GET /requests/{id}) and sent in a failed callback.
public struct HandlerRun: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Exit status 0 and a JSON value on stdout: the result.
        case succeeded
        /// A non-zero exit status.
        case exited(Int)
        /// Ended by a signal it did not arrange (not the timeout's).
        case signalled(Int)
        /// Still running at its timeout: its process group was sent SIGTERM, then SIGKILL.
        case timedOut(seconds: Double)
        /// It wrote more than `limit` bytes to stdout (it was killed there).
        case outputTooLarge(limit: Int)
        /// Exit status 0, but stdout was not one JSON value.
        case invalidOutput(String)
        /// It could not be started (not installed any more, refused, or the spawn failed).
        case notStarted(String)
    }

    public var handler: String
    public var outcome: Outcome
    /// The last bytes of stderr (at most `HandlerRun.stderrTailBytes`), as UTF-8 with invalid bytes replaced.
    public var stderrTail: String

    public static let stderrTailBytes = 4096

    public init(handler: String, outcome: Outcome, stderrTail: String = "") {
        self.handler = handler
        self.outcome = outcome
        self.stderrTail = stderrTail
    }

    public var exitStatus: Int? {
        switch outcome {
        case .succeeded, .invalidOutput: 0
        case .exited(let status): status
        default: nil
        }
    }

    /// The stable error code of a failed run; nil when it succeeded.
    public var errorCode: String? {
        switch outcome {
        case .succeeded: nil
        case .timedOut: "handler_timeout"
        default: "handler_failed"
        }
    }

    /// Why the run failed, for people; nil when it succeeded.
    public var errorMessage: String? {
        switch outcome {
        case .succeeded: return nil
        case .exited(let status): return "handler \(handler) exited with status \(status)"
        case .signalled(let signal): return "handler \(handler) was ended by signal \(signal)"
        case .timedOut(let seconds): return "handler \(handler) was still running after \(Self.seconds(seconds)) and was killed"
        case .outputTooLarge(let limit): return "handler \(handler) wrote more than \(limit) bytes to stdout and was killed"
        case .invalidOutput(let why): return "handler \(handler) exited 0 but its stdout is not one JSON value: \(why)"
        case .notStarted(let why): return "handler \(handler) could not be started: \(why)"
        }
    }

    private static func seconds(_ s: Double) -> String {
        s.rounded() == s ? "\(Int(s)) s" : "\(s) s"
    }
}

extension HandlerRun {
    /// A failed run as the error object of the callback and of GET /requests/{id}: `code`, `message`, and
    /// `handler`, `exit_status` (null when it did not exit), `signal` and `stderr_tail`. Stored as the job's
    /// error text, so the store and deliveryd carry it like any error.
    public var errorDocument: JSONValue? {
        guard let code = errorCode, let message = errorMessage else { return nil }
        var signal: JSONValue = .null
        if case .signalled(let n) = outcome { signal = .number(Double(n)) }
        return [
            "code": .string(code), "message": .string(message), "handler": .string(handler),
            "exit_status": exitStatus.map { .number(Double($0)) } ?? .null, "signal": signal, "stderr_tail": .string(stderrTail),
        ]
    }

    /// A stored error text that is an `errorDocument` (a handler's failure), as that object; nil for any other.
    public static func errorDocument(stored text: String) -> JSONValue? {
        guard text.hasPrefix("{"), let value = try? JSONValue.parse(Array(text.utf8)), value["code"]?.stringValue != nil,
            value["handler"]?.stringValue != nil
        else { return nil }
        return value
    }
}

/// What running a job produced: its result, or why it failed; and for a handler, how its program ended.
public struct WorkOutcome: Sendable, Equatable {
    public var result: JSONValue?
    /// Set when the work failed: for a handler, its run's `errorDocument` as JSON text.
    public var error: String?
    public var handlerRun: HandlerRun?

    public init(result: JSONValue?, error: String? = nil, handlerRun: HandlerRun? = nil) {
        self.result = result
        self.error = error
        self.handlerRun = handlerRun
    }

    /// A handler's run: its result when it succeeded, else its error document.
    public init(_ run: HandlerRun, result: JSONValue?) {
        self.init(result: run.errorCode == nil ? result : nil, error: run.errorDocument?.text, handlerRun: run)
    }
}

/// Which request a handler runs for: what its environment tells it.
public struct WorkContext: Sendable, Equatable {
    public var requestID: String
    public var mode: RequestMode
    public init(requestID: String, mode: RequestMode) {
        self.requestID = requestID
        self.mode = mode
    }
}

/// Runs handler programs (the `Handlers` library). `WorkEngine` hands `.handler` jobs to it.
public protocol HandlerRunning: Sendable {
    /// Whether a handler of that name is installed now (the front door answers 404 for one that is not).
    func isInstalled(_ name: String) -> Bool
    /// The outcome always carries `handlerRun`; `result` is the JSON value stdout held when the run succeeded.
    func run(handler name: String, input: JSONValue, context: WorkContext) -> WorkOutcome
}
