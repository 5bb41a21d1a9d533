import JSON

/// Which endpoint a body was sent to; they accept slightly different fields.
public enum RequestMode: String, Sendable {
    case sync, async
}

/// A validated request: the work plus, for /async, where to deliver the result.
public struct ParsedRequest: Sendable, Equatable {
    public var spec: JobSpec
    public var callbackURL: String?
    /// The request body as received (normalized JSON), kept for the record.
    public var input: JSONValue
}

/// Turns a request body into a `ParsedRequest`, or a `ValidationError` naming the first problem.
/// Pure: no I/O. Only the callback URL's type and length are checked here; the SSRF policy (`CallbackPolicy`) judges
/// it, in API when the job is accepted and in Delivery before every attempt.
public enum RequestParser {
    private static let opFields: [String: Set<String>] = [
        "hash": ["input_data", "iterations"],
        "text": ["text", "count"],
        "report": ["records", "report_name"],
        "compute": ["payload"],
    ]
    /// A field that, when present, tells which op a body without `op` means.
    private static let inferenceKeys: [(key: String, op: String)] = [
        ("input_data", "hash"), ("text", "text"), ("records", "report"), ("report_name", "report"), ("payload", "compute"),
    ]

    public static func parse(body: [UInt8], mode: RequestMode) throws(ValidationError) -> ParsedRequest {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            throw ValidationError(.badJSON, "request body is not valid JSON: \(error)")
        }
        return try parse(value, mode: mode)
    }

    public static func parse(_ value: JSONValue, mode: RequestMode) throws(ValidationError) -> ParsedRequest {
        guard let object = value.objectValue else {
            throw ValidationError(.invalidBody, "request body must be a JSON object, not \(value.typeName)")
        }
        if object["handler"] != nil || object["op"] == "handler" { return try handler(object, body: value, mode: mode) }
        let op = try resolveOp(object)
        guard let fields = opFields[op] else {
            throw ValidationError(.unknownOp, "unknown op '\(op)'; expected one of compute, hash, report, text, or handler with a handler field", field: "op")
        }
        for key in object.keys.sorted() where !fields.contains(key) && key != "op" && key != "callback_url" {
            throw ValidationError(.unknownField, "unknown field '\(key)' for op \(op)", field: key)
        }

        let spec: JobSpec
        switch op {
        case "hash":
            let input = try string(object, "input_data", required: true, length: Limits.hashInputBytes, countBytes: true)!
            let iterations = try int(object, "iterations", Limits.hashIterations) ?? Limits.hashIterationsDefault
            spec = .hash(input: input, iterations: iterations)
        case "text":
            let text = try string(object, "text", required: true, length: Limits.textBytes, countBytes: true)!
            let count = try int(object, "count", Limits.textCount) ?? Limits.textCountDefault
            spec = .text(text: text, count: count)
        case "report":
            guard object["records"] != nil else {
                throw ValidationError(.missingField, "records is required", field: "records")
            }
            let records = try int(object, "records", Limits.reportRecords)!
            let name = try string(object, "report_name", required: false, length: Limits.reportNameBytes, countBytes: true) ?? Limits.reportNameDefault
            if mode == .sync && records > Limits.reportRecordsSyncMax {
                throw ValidationError(
                    .useAsync,
                    "reports of \(Limits.reportRecordsSyncMax + 1) or more records take too long for /sync; use POST /async",
                    field: "records")
            }
            spec = .report(records: records, name: name)
        default:  // compute
            guard let payloadValue = object["payload"] else {
                throw ValidationError(.missingField, "payload is required", field: "payload")
            }
            guard let payload = payloadValue.objectValue else {
                throw ValidationError(.invalidType, "payload must be an object, not \(payloadValue.typeName)", field: "payload")
            }
            for key in payload.keys.sorted() where key != "operation" && key != "complexity" {
                throw ValidationError(.unknownField, "unknown field 'payload.\(key)'", field: "payload.\(key)")
            }
            guard let operationValue = payload["operation"] else {
                throw ValidationError(.missingField, "payload.operation is required", field: "payload.operation")
            }
            guard let operationName = operationValue.stringValue else {
                throw ValidationError(.invalidType, "payload.operation must be a string", field: "payload.operation")
            }
            guard let kind = JobSpec.ComputeKind(rawValue: operationName) else {
                throw ValidationError(
                    .outOfRange, "payload.operation must be one of hash, prime, matrix, transform", field: "payload.operation")
            }
            let complexity = try int(payload, "complexity", Limits.complexity, path: "payload.") ?? Limits.complexityDefault
            spec = .compute(kind: kind, complexity: complexity)
        }

        let callback = try callbackURL(object, mode: mode)
        return ParsedRequest(spec: spec, callbackURL: callback, input: value)
    }

    /// `{"handler": NAME, "input": <any JSON>}` (and `op` "handler", if given). Whether NAME is installed is
    /// the caller's question: this parser is pure.
    private static func handler(_ object: [String: JSONValue], body: JSONValue, mode: RequestMode) throws(ValidationError) -> ParsedRequest {
        for key in object.keys.sorted() where !["handler", "input", "op", "callback_url"].contains(key) {
            throw ValidationError(.unknownField, "unknown field '\(key)' for a handler; give handler and input", field: key)
        }
        if let op = object["op"], op != "handler" {
            throw ValidationError(.ambiguousOp, "handler is given, so op must be \"handler\" or absent", field: "op")
        }
        guard let nameValue = object["handler"] else { throw ValidationError(.missingField, "handler is required", field: "handler") }
        guard let name = nameValue.stringValue else {
            throw ValidationError(.invalidType, "handler must be a string, not \(nameValue.typeName)", field: "handler")
        }
        guard HandlerName.isValid(name) else {
            throw ValidationError(
                .outOfRange, "handler must be 1 to \(HandlerName.bytes.upperBound) of a-z, 0-9, _ and -, starting with a letter or digit",
                field: "handler")
        }
        guard let input = object["input"] else { throw ValidationError(.missingField, "input is required (any JSON value)", field: "input") }
        return ParsedRequest(spec: .handler(name: name, input: input), callbackURL: try callbackURL(object, mode: mode), input: body)
    }

    private static func resolveOp(_ object: [String: JSONValue]) throws(ValidationError) -> String {
        if let opValue = object["op"] {
            guard let op = opValue.stringValue else {
                throw ValidationError(.invalidType, "op must be a string, not \(opValue.typeName)", field: "op")
            }
            return op
        }
        let inferred = Set(inferenceKeys.filter { object[$0.key] != nil }.map(\.op))
        if inferred.count > 1 {
            throw ValidationError(
                .ambiguousOp, "fields of several ops (\(inferred.sorted().joined(separator: ", "))) given; set op", field: "op")
        }
        guard let op = inferred.first else {
            throw ValidationError(
                .missingField, "op is missing and cannot be inferred; give op or one of input_data, text, records, payload",
                field: "op")
        }
        return op
    }

    private static func callbackURL(_ object: [String: JSONValue], mode: RequestMode) throws(ValidationError) -> String? {
        switch mode {
        case .sync:
            if object["callback_url"] != nil {
                throw ValidationError(.unknownField, "callback_url is only accepted by POST /async", field: "callback_url")
            }
            return nil
        case .async:
            guard let value = object["callback_url"] else {
                throw ValidationError(.missingField, "callback_url is required for POST /async", field: "callback_url")
            }
            guard let url = value.stringValue else {
                throw ValidationError(.invalidType, "callback_url must be a string", field: "callback_url")
            }
            guard Limits.callbackURLBytes.contains(url.utf8.count) else {
                throw ValidationError(
                    .outOfRange, "callback_url must be 1 to \(Limits.callbackURLBytes.upperBound) bytes", field: "callback_url")
            }
            return url
        }
    }

    private static func string(
        _ object: [String: JSONValue], _ key: String, required: Bool, length: ClosedRange<Int>, countBytes: Bool = false
    ) throws(ValidationError) -> String? {
        guard let value = object[key] else {
            if required { throw ValidationError(.missingField, "\(key) is required", field: key) }
            return nil
        }
        guard let s = value.stringValue else {
            throw ValidationError(.invalidType, "\(key) must be a string, not \(value.typeName)", field: key)
        }
        let n = countBytes ? s.utf8.count : s.count
        guard length.contains(n) else {
            let unit = countBytes ? "bytes" : "characters"
            throw ValidationError(
                .outOfRange, "\(key) must be \(length.lowerBound) to \(length.upperBound) \(unit) long", field: key)
        }
        return s
    }

    private static func int(
        _ object: [String: JSONValue], _ key: String, _ range: ClosedRange<Int>, path: String = ""
    ) throws(ValidationError) -> Int? {
        guard let value = object[key] else { return nil }
        let name = path + key
        guard case .number(let n) = value else {
            throw ValidationError(.invalidType, "\(name) must be an integer, not \(value.typeName)", field: name)
        }
        guard let i = value.intValue else {
            if n.rounded() != n {
                throw ValidationError(.invalidType, "\(name) must be an integer", field: name)
            }
            throw ValidationError(
                .outOfRange, "\(name) must be between \(range.lowerBound) and \(range.upperBound)", field: name)
        }
        guard range.contains(i) else {
            throw ValidationError(
                .outOfRange, "\(name) must be between \(range.lowerBound) and \(range.upperBound)", field: name)
        }
        return i
    }
}
