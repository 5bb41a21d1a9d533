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

    public init(sleep: @escaping @Sendable (_ milliseconds: Int) -> Void = { ms in usleep(UInt32(ms) * 1000) }) {
        self.sleep = sleep
    }

    public func run(_ spec: JobSpec) -> JSONValue {
        switch spec {
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
