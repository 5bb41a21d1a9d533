import Digest
import JSON

#if canImport(Glibc)
import Glibc
#endif

/// Runs a `JobSpec` and returns its result object. The one work engine: /sync calls it inline and
/// deliveryd calls it for async jobs, so both styles compute identical results for identical input.
public struct WorkEngine: Sendable {
    /// Simulated I/O wait of the report op; replaceable so unit tests need not sleep.
    public var sleep: @Sendable (_ milliseconds: Int) -> Void
    /// Runs `.handler` jobs; nil when no handlers folder is configured (such a job then fails).
    public var handlers: (any HandlerRunning)?

    public init(
        handlers: (any HandlerRunning)? = nil, sleep: @escaping @Sendable (_ milliseconds: Int) -> Void = { ms in usleep(UInt32(ms) * 1000) }
    ) {
        self.handlers = handlers
        self.sleep = sleep
    }

    /// The one entry point of /sync and deliveryd: a built-in op, or a handler program.
    public func perform(_ spec: JobSpec, context: WorkContext) -> WorkOutcome {
        guard case .handler(let name, let input) = spec else { return WorkOutcome(result: run(spec)) }
        guard let handlers else {
            let run = HandlerRun(handler: name, outcome: .notStarted("no handlers folder is configured (WORKFCGI_HANDLERS_DIR)"))
            return WorkOutcome(run, result: nil)
        }
        return handlers.run(handler: name, input: input, context: context)
    }

    /// A built-in op's result (a handler job has none here: `perform` runs it).
    public func run(_ spec: JobSpec) -> JSONValue {
        switch spec {
        case .handler:
            return .null
        case .hash(let input, let iterations):
            return [
                "hash": .string(Digest.hex(Digest.iteratedSHA256(Array(input.utf8), times: iterations))),
                "iterations": .number(Double(iterations)),
            ]
        case .text(let text, let count):
            return TextOp.run(text: text, count: count)
        case .report(let records, let name):
            return ReportOp.run(records: records, name: name, sleep: sleep)
        case .compute(let kind, let complexity):
            return ComputeOp.run(kind, complexity: complexity)
        }
    }
}
