import JSON
import Testing

@testable import WorkEngine

@Suite struct RequestParserTests {
    func parse(_ body: String, _ mode: RequestMode = .sync) -> Result<ParsedRequest, ValidationError> {
        do { return .success(try RequestParser.parse(body: Array(body.utf8), mode: mode)) } catch { return .failure(error) }
    }

    @Test(arguments: [
        (#"{"input_data": "hello", "iterations": 50000}"#, JobSpec.hash(input: "hello", iterations: 50000)),
        (#"{"input_data": "hello"}"#, .hash(input: "hello", iterations: 50000)),
        (#"{"text": "Hello world", "count": 3}"#, .text(text: "Hello world", count: 3)),
        (#"{"records": 20, "report_name": "march"}"#, .report(records: 20, name: "march")),
        (#"{"records": 5}"#, .report(records: 5, name: "report")),
        (#"{"payload": {"operation": "matrix", "complexity": 4}}"#, .compute(kind: .matrix, complexity: 4)),
        (#"{"payload": {"operation": "prime"}}"#, .compute(kind: .prime, complexity: 1)),
        (#"{"op": "hash", "input_data": "x", "iterations": 1.0}"#, .hash(input: "x", iterations: 1)),
        (#"{"op": "compute", "payload": {"operation": "transform", "complexity": 10}}"#, .compute(kind: .transform, complexity: 10)),
    ])
    func accepts(body: String, spec: JobSpec) throws {
        #expect(try parse(body).get().spec == spec)
    }

    @Test(arguments: [
        ("", ValidationError.Code.badJSON, nil as String?),
        ("{", .badJSON, nil),
        ("\u{FF}", .badJSON, nil),
        ("[1,2]", .invalidBody, nil),
        ("\"hash\"", .invalidBody, nil),
        ("{}", .missingField, "op"),
        (#"{"op": 3}"#, .invalidType, "op"),
        (#"{"op": "sleep"}"#, .unknownOp, "op"),
        (#"{"input_data": "a", "text": "b"}"#, .ambiguousOp, "op"),
        (#"{"input_data": 5}"#, .invalidType, "input_data"),
        (#"{"input_data": "a", "iterations": 0}"#, .outOfRange, "iterations"),
        (#"{"input_data": "a", "iterations": 5000001}"#, .outOfRange, "iterations"),
        (#"{"input_data": "a", "iterations": 1.5}"#, .invalidType, "iterations"),
        (#"{"input_data": "a", "iterations": "10"}"#, .invalidType, "iterations"),
        (#"{"input_data": "a", "iterations": true}"#, .invalidType, "iterations"),
        (#"{"input_data": "a", "iterations": 1e300}"#, .outOfRange, "iterations"),
        (#"{"input_data": "a", "extra": 1}"#, .unknownField, "extra"),
        (#"{"text": "a", "count": 21}"#, .outOfRange, "count"),
        (#"{"text": null}"#, .invalidType, "text"),
        (#"{"records": 0}"#, .outOfRange, "records"),
        (#"{"records": 50}"#, .useAsync, "records"),
        (#"{"report_name": "x"}"#, .missingField, "records"),
        (#"{"records": 5, "report_name": ""}"#, .outOfRange, "report_name"),
        (#"{"payload": 1}"#, .invalidType, "payload"),
        (#"{"payload": {}}"#, .missingField, "payload.operation"),
        (#"{"payload": {"operation": "sort"}}"#, .outOfRange, "payload.operation"),
        (#"{"payload": {"operation": "prime", "complexity": 11}}"#, .outOfRange, "payload.complexity"),
        (#"{"payload": {"operation": "prime", "level": 1}}"#, .unknownField, "payload.level"),
        (#"{"input_data": "a", "callback_url": "http://x.example/"}"#, .unknownField, "callback_url"),
    ])
    func refusesOnSync(body: String, code: ValidationError.Code, field: String?) {
        guard case .failure(let error) = parse(body) else {
            Issue.record("accepted \(body)")
            return
        }
        #expect(error.code == code, "\(body): \(error.message)")
        #expect(error.field == field)
    }

    @Test func asyncNeedsACallbackURLAndAllowsLargeReports() throws {
        guard case .failure(let missing) = parse(#"{"records": 5}"#, .async) else { Issue.record("accepted"); return }
        #expect(missing.code == .missingField && missing.field == "callback_url")
        guard case .failure(let wrongType) = parse(#"{"records": 5, "callback_url": 7}"#, .async) else { Issue.record("accepted"); return }
        #expect(wrongType.code == .invalidType)
        let ok = try parse(#"{"records": 500, "callback_url": "https://hooks.example.com/x"}"#, .async).get()
        #expect(ok.spec == .report(records: 500, name: "report"))
        #expect(ok.callbackURL == "https://hooks.example.com/x")
    }

    @Test func hashInputLimitCountsBytes() {
        let big = String(repeating: "é", count: 40_000)  // 80,000 bytes
        guard case .failure(let error) = parse(#"{"input_data": "\#(big)"}"#) else { Issue.record("accepted"); return }
        #expect(error.code == .outOfRange && error.field == "input_data")
    }

    /// What the store keeps is exactly what was validated: every op reads back equal, defaults included.
    @Test(arguments: [
        #"{"input_data":"héllo"}"#, #"{"op":"text","text":"a b","count":3}"#, #"{"records":5}"#,
        #"{"payload":{"operation":"matrix","complexity":2}}"#,
    ])
    func storedSpecsReadBackEqual(body: String) throws {
        let spec = try RequestParser.parse(body: Array(body.utf8), mode: .sync).spec
        let text = spec.stored.text
        #expect(JobSpec(stored: try JSONValue.parse(Array(text.utf8))) == spec, "\(text)")
        #expect(JobSpec(stored: ["op": "hash", "input_data": "x"]) == nil, "a damaged row is not guessed at")
    }
}
