import JSON

/// A validated job as it is stored and read back: every field explicit, defaults filled in. Not a request
/// format: this is what `RequestParser` produced, so reading it back validates nothing and cannot disagree
/// with the parser of the day (limits may change between versions; an accepted job still runs as accepted).
extension JobSpec {
    public var stored: JSONValue {
        switch self {
        case .hash(let input, let iterations):
            ["op": "hash", "input_data": .string(input), "iterations": .number(Double(iterations))]
        case .text(let text, let count):
            ["op": "text", "text": .string(text), "count": .number(Double(count))]
        case .report(let records, let name):
            ["op": "report", "records": .number(Double(records)), "report_name": .string(name)]
        case .compute(let kind, let complexity):
            ["op": "compute", "operation": .string(kind.rawValue), "complexity": .number(Double(complexity))]
        case .handler(let name, let input):
            ["op": "handler", "handler": .string(name), "input": input]
        }
    }

    /// Reads `stored` back; nil when the value is not one (a damaged row).
    public init?(stored value: JSONValue) {
        switch value["op"]?.stringValue.flatMap(Op.init(rawValue:)) {
        case .hash:
            guard let input = value["input_data"]?.stringValue, let n = value["iterations"]?.intValue else { return nil }
            self = .hash(input: input, iterations: n)
        case .text:
            guard let text = value["text"]?.stringValue, let n = value["count"]?.intValue else { return nil }
            self = .text(text: text, count: n)
        case .report:
            guard let n = value["records"]?.intValue, let name = value["report_name"]?.stringValue else { return nil }
            self = .report(records: n, name: name)
        case .compute:
            guard let kind = value["operation"]?.stringValue.flatMap(ComputeKind.init(rawValue:)),
                let n = value["complexity"]?.intValue
            else { return nil }
            self = .compute(kind: kind, complexity: n)
        case .handler:
            guard let name = value["handler"]?.stringValue, let input = value["input"] else { return nil }
            self = .handler(name: name, input: input)
        case nil:
            return nil
        }
    }
}
