import JSON

/// One validated unit of work. Both /sync and deliveryd run these through the same `WorkEngine`.
public enum JobSpec: Sendable, Equatable {
    /// Iterated SHA-256: digest of digest, `iterations` times.
    case hash(input: String, iterations: Int)
    /// Text statistics plus a deterministic rewrite repeated `count` times.
    case text(text: String, count: Int)
    /// A report over `records` records, 10 ms of simulated I/O plus one SHA-256 step each.
    case report(records: Int, name: String)
    /// CPU-bound work, 50x more at complexity 10 than at 1 (about 0.1-0.2 s at 1 on a 2-core x86_64: `workbench`).
    case compute(kind: ComputeKind, complexity: Int)
    /// A handler program (see `HandlerName`), given `input` on stdin; its stdout is the result.
    case handler(name: String, input: JSONValue)

    public enum ComputeKind: String, Sendable, CaseIterable {
        case hash, prime, matrix, transform
    }

    /// The operations, by the name used in the `op` field.
    public enum Op: String, Sendable, CaseIterable {
        case hash, text, report, compute, handler
    }

    public var op: Op {
        switch self {
        case .hash: .hash
        case .text: .text
        case .report: .report
        case .compute: .compute
        case .handler: .handler
        }
    }
}

/// Documented bounds of every field. Kept in one place so validation, README and tests agree.
public enum Limits {
    public static let hashInputBytes = 0...65_536
    public static let hashIterations = 1...5_000_000
    public static let hashIterationsDefault = 50_000
    /// In UTF-8 bytes, like every string bound: a character count would let one "character" carry
    /// hundreds of combining marks, and the text op repeats its input up to 20 times.
    public static let textBytes = 0...10_000
    public static let textCount = 1...20
    public static let textCountDefault = 1
    public static let reportRecords = 1...1_000
    /// The most records a /sync report may have (49 is accepted, 50 is refused with use_async): larger ones
    /// belong on /async.
    public static let reportRecordsSyncMax = 49
    public static let reportNameBytes = 1...100
    public static let reportNameDefault = "report"
    public static let complexity = 1...10
    public static let complexityDefault = 1
    public static let callbackURLBytes = 1...2_048
    /// No op can produce a result larger than this, serialized (the text op's worst case, 20 repeats of
    /// 10,000 bytes that each escape to 6, is 1.2 MB); a unit test holds every op to it.
    public static let resultBytes = 2 << 20
}

extension JobSpec {
    /// An upper bound on the serialized size of this job's result, known before it runs: the store holds this
    /// much in reserve for an accepted /async job until its result is written, so the front door stops short
    /// of the size bound with room for every result it has promised. Per input byte of the text op: at most 6
    /// once escaped (a control character), or 3 once upper-cased (ΐ becomes three code points, 6 bytes from
    /// 2); the rest of any result is a few hundred bytes. A unit test holds every op to it.
    public var resultBytesBound: Int {
        let overhead = 512
        switch self {
        case .text(let text, let count):
            var line = 0
            for byte in text.utf8 {
                switch byte {
                case 0..<0x20: line += 6
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): line += 2
                case 0x80...: line += 3
                default: line += 1
                }
            }
            return min(Limits.resultBytes, count * (line + 1) + overhead)
        case .report(_, let name): return overhead + 6 * name.utf8.count
        case .hash, .compute: return overhead
        // A handler's stdout is bounded at `resultBytes` once re-serialized.
        case .handler: return Limits.resultBytes + overhead
        }
    }
}
