import WorkEngine
import JSON

/// When a run's process group gets which signal: SIGTERM at the timeout, SIGKILL `grace` later. Pure: the
/// runner asks it with the time elapsed and does what it says.
public struct KillSchedule: Sendable, Equatable {
    public var timeout: Double
    public var grace: Double

    public enum Step: Sendable, Equatable {
        /// Nothing to send yet; ask again within `seconds` (or when something happens).
        case wait(seconds: Double)
        case terminate
        case kill
    }

    public init(timeout: Double, grace: Double) {
        self.timeout = timeout
        self.grace = grace
    }

    /// `sent`: the strongest signal already sent (nil, SIGTERM's step, or SIGKILL's).
    public func step(elapsed: Double, sent: Step?) -> Step {
        switch sent {
        case .kill?: return .wait(seconds: 0.05)  // killed: only the reaping is left
        case .terminate?: return elapsed >= timeout + grace ? .kill : .wait(seconds: timeout + grace - elapsed)
        case .wait?, nil: return elapsed >= timeout ? .terminate : .wait(seconds: timeout - elapsed)
        }
    }
}

/// A run's stdout: kept up to `limit` bytes; one byte more and the run is over (the runner kills it and
/// stops reading), so memory stays flat whatever the program writes.
public struct BoundedOutput: Sendable, Equatable {
    public let limit: Int
    public private(set) var bytes: [UInt8] = []
    public private(set) var overflowed = false

    public init(limit: Int) { self.limit = limit }

    /// Keeps `chunk`; false once the bound is passed (nothing of the excess is kept).
    public mutating func append(_ chunk: some Collection<UInt8>) -> Bool {
        guard !overflowed else { return false }
        if bytes.count + chunk.count > limit {
            overflowed = true
            return false
        }
        bytes.append(contentsOf: chunk)
        return true
    }
}

/// The last `capacity` bytes of a run's stderr: what it said before it failed is the end of what it wrote.
public struct TailBuffer: Sendable, Equatable {
    public let capacity: Int
    public private(set) var bytes: [UInt8] = []
    /// Bytes dropped from the front.
    public private(set) var dropped = 0

    public init(capacity: Int) { self.capacity = capacity }

    public mutating func append(_ chunk: some Collection<UInt8>) {
        bytes.append(contentsOf: chunk)
        if bytes.count > capacity {
            let extra = bytes.count - capacity
            bytes.removeFirst(extra)
            dropped += extra
        }
    }

    /// As text: invalid UTF-8 (a multi-byte character cut at the front, or binary) replaced.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// How a run ended, in the terms the verdict needs (from waitpid and the runner's own doings).
public struct RunEnd: Sendable, Equatable {
    public enum Termination: Sendable, Equatable {
        case exited(Int)
        case signalled(Int)
        /// posix_spawn failed (its errno's text).
        case notStarted(String)
    }

    public var termination: Termination
    /// The kill schedule fired (SIGTERM was sent at the timeout).
    public var timedOut: Bool
    public var stdout: BoundedOutput
    public var stderr: TailBuffer

    public init(termination: Termination, timedOut: Bool, stdout: BoundedOutput, stderr: TailBuffer) {
        self.termination = termination
        self.timedOut = timedOut
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// What a run's end means: the result, or which failure. Pure. The timeout and the output bound come first:
/// a program killed for either may exit any way, and its partial stdout is not a result.
public enum RunVerdict {
    public static func decide(_ end: RunEnd, handler: String, timeout: Double) -> WorkOutcome {
        let outcome: HandlerRun.Outcome
        var result: JSONValue?
        if end.timedOut {
            outcome = .timedOut(seconds: timeout)
        } else if end.stdout.overflowed {
            outcome = .outputTooLarge(limit: end.stdout.limit)
        } else {
            switch end.termination {
            case .notStarted(let why): outcome = .notStarted(why)
            case .signalled(let signal): outcome = .signalled(signal)
            case .exited(let status) where status != 0: outcome = .exited(status)
            case .exited:
                do {
                    let value = try JSONValue.parse(end.stdout.bytes)
                    // Re-serialized it may grow (1e300 prints as 1e+300): the stored result is what is bounded.
                    if value.text.utf8.count > end.stdout.limit {
                        outcome = .outputTooLarge(limit: end.stdout.limit)
                    } else {
                        outcome = .succeeded
                        result = value
                    }
                } catch {
                    outcome = .invalidOutput(end.stdout.bytes.isEmpty ? "stdout is empty" : "\(error)")
                }
            }
        }
        return WorkOutcome(HandlerRun(handler: handler, outcome: outcome, stderrTail: end.stderr.text), result: result)
    }
}
