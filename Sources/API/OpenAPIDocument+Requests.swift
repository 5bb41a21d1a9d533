import JSON
import WorkEngine

/// The request bodies of POST /sync and POST /async, built from `Limits`: each op's fields are written once
/// for both endpoints (/async adds `callback_url`, and takes larger reports).
extension OpenAPIDocument {
    /// The components the request bodies add to `components.schemas`.
    static var requestSchemas: [String: JSONValue] {
        [
            "SyncRequest": ["oneOf": .array(JobSpec.Op.allCases.map { requestVariant($0, .sync) })],
            "AsyncRequest": ["oneOf": .array(JobSpec.Op.allCases.map { requestVariant($0, .async) })],
            "ComputePayload": computePayload,
            "CallbackURL": string(
                bytes: Limits.callbackURLBytes, about: "http(s) URL the signed result is POSTed to; checked by the callback URL policy"),
        ]
    }

    /// One op's body on one endpoint. A new op adds its case here (the switch holds every op to a schema).
    static func requestVariant(_ op: JobSpec.Op, _ mode: RequestMode) -> JSONValue {
        let fields: [String: JSONValue]
        let required: [String]
        switch op {
        case .handler:
            return handlerRequest(callback: mode == .async)
        case .hash:
            fields = [
                "input_data": string(bytes: Limits.hashInputBytes),
                "iterations": integer(Limits.hashIterations, default: Limits.hashIterationsDefault),
            ]
            required = ["input_data"]
        case .text:
            fields = ["text": string(bytes: Limits.textBytes), "count": integer(Limits.textCount, default: Limits.textCountDefault)]
            required = ["text"]
        case .report:
            let records = Limits.reportRecords
            fields = [
                "records": integer(
                    mode == .sync ? records.lowerBound...Limits.reportRecordsSyncMax : records,
                    about: "\(records.lowerBound) to \(grouped(records.upperBound)); /sync takes at most "
                        + "\(Limits.reportRecordsSyncMax) (else 422 use_async)"),
                "report_name": string(bytes: Limits.reportNameBytes, default: Limits.reportNameDefault),
            ]
            required = ["records"]
        case .compute:
            fields = ["payload": reference("ComputePayload")]
            required = ["payload"]
        }
        var properties = fields
        properties["op"] = ["const": .string(op.rawValue), "description": "optional: inferred from the fields when absent"]
        if mode == .async { properties["callback_url"] = reference("CallbackURL") }
        return [
            "type": "object", "additionalProperties": false, "properties": .object(properties),
            "required": .array((required + (mode == .async ? ["callback_url"] : [])).map(JSONValue.string)),
        ]
    }

    static var computePayload: JSONValue {
        [
            "type": "object", "additionalProperties": false, "required": ["operation"],
            "properties": [
                "operation": ["enum": .array(JobSpec.ComputeKind.allCases.map { .string($0.rawValue) })],
                "complexity": integer(
                    Limits.complexity, default: Limits.complexityDefault,
                    about: "CPU work growing 50x from 1 to 10 (about 0.1-0.2 s at 1 on a 2-core x86_64)"),
            ],
        ]
    }

    static func reference(_ schema: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(schema)")] }

    /// A string bounded in UTF-8 bytes, as `Limits` counts. (JSON Schema counts characters, so a schema
    /// bound admits no more than the byte bound does.)
    static func string(bytes: ClosedRange<Int>, default value: String? = nil, about: String? = nil) -> JSONValue {
        var schema: [String: JSONValue] = [
            "type": "string", "maxLength": .number(Double(bytes.upperBound)),
            "description": .string(about ?? "\(bytes.lowerBound) to \(grouped(bytes.upperBound)) bytes of UTF-8"),
        ]
        if bytes.lowerBound > 0 { schema["minLength"] = .number(Double(bytes.lowerBound)) }
        if let value { schema["default"] = .string(value) }
        return .object(schema)
    }

    static func integer(_ range: ClosedRange<Int>, default value: Int? = nil, about: String? = nil) -> JSONValue {
        var schema: [String: JSONValue] = [
            "type": "integer", "minimum": .number(Double(range.lowerBound)), "maximum": .number(Double(range.upperBound)),
        ]
        if let value { schema["default"] = .number(Double(value)) }
        if let about { schema["description"] = .string(about) }
        return .object(schema)
    }

    /// 65536 -> "65,536".
    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return out
    }
}
