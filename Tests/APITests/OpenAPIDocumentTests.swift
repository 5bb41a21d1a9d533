import JSON
import Testing
import WorkEngine

@testable import API

/// The OpenAPI document says what the code does: every bound its request schemas state is the parser's own
/// (a body at each bound is accepted and one past it refused, naming the field), the bounds of the
/// parameters typed into its text are the handlers', and every reference resolves. schemathesis
/// (OpenAPITests) then holds the live stack to it.
@Suite struct OpenAPIDocumentTests {
    static let document = OpenAPIDocument.value(version: "9.9.9 (test)")

    /// The smallest valid body of each op, to which one probed field is added.
    static func minimalBody(_ op: JobSpec.Op, _ mode: RequestMode) -> [String: JSONValue] {
        var body: [String: JSONValue] =
            switch op {
            case .hash: ["input_data": "x"]
            case .text: ["text": "x"]
            case .report: ["records": 1]
            case .compute: ["payload": ["operation": "hash"]]
            case .handler: ["handler": "x", "input": 1]
            }
        if mode == .async { body["callback_url"] = "https://hooks.example.com/cb" }
        return body
    }

    /// `field`'s value at and past the bounds of `schema`: (value, accepted).
    static func probes(_ schema: JSONValue, field: String) -> [(JSONValue, Bool)] {
        var out: [(JSONValue, Bool)] = []
        if let low = schema["minimum"]?.intValue { out += [(.number(Double(low)), true), (.number(Double(low - 1)), false)] }
        if let high = schema["maximum"]?.intValue { out += [(.number(Double(high)), true), (.number(Double(high + 1)), false)] }
        // A URL of the length probed (the parser checks only its length).
        let prefix = field == "callback_url" ? "https://hooks.example.com/" : ""
        func text(_ n: Int) -> JSONValue { .string(prefix + String(repeating: "a", count: max(0, n - prefix.utf8.count))) }
        if let high = schema["maxLength"]?.intValue { out += [(text(high), true), (text(high + 1), false)] }
        if let low = schema["minLength"]?.intValue, low > 0 { out += [(text(low), true), (.string(String(repeating: "a", count: low - 1)), false)] }
        return out
    }

    @Test(arguments: JobSpec.Op.allCases, [RequestMode.sync, .async])
    func requestSchemaBoundsAreTheParsers(op: JobSpec.Op, mode: RequestMode) throws {
        let name = mode == .sync ? "SyncRequest" : "AsyncRequest"
        let variants = try #require(Self.document["components"]?["schemas"]?[name]?["oneOf"])
        guard case .array(let all) = variants else { Issue.record("\(name) has no oneOf"); return }
        let variant = try #require(all.first { $0["properties"]?["op"]?["const"]?.stringValue == op.rawValue })
        var probed = 0
        for (field, property) in try #require(variant["properties"]?.objectValue) {
            let schema = DocsPage.resolve(property, in: Self.document)
            // Fields of a nested object (compute's payload) are probed inside it.
            let nested = schema["properties"]?.objectValue ?? [:]
            let targets: [(path: [String], schema: JSONValue)] =
                nested.isEmpty ? [([field], schema)] : nested.map { ([field, $0.key], $0.value) }
            for target in targets {
                for (value, accepted) in Self.probes(target.schema, field: field) {
                    var body = Self.minimalBody(op, mode)
                    if target.path.count == 1 {
                        body[field] = value
                    } else {
                        var inner = body[field]?.objectValue ?? [:]
                        inner[target.path[1]] = value
                        body[field] = .object(inner)
                    }
                    let shown = target.path.joined(separator: ".")
                    do {
                        _ = try RequestParser.parse(.object(body), mode: mode)
                        #expect(accepted, "\(op) \(mode): \(shown) = \(value.text.prefix(40)) is past the document's bound, yet accepted")
                    } catch {
                        #expect(!accepted, "\(op) \(mode): \(shown) = \(value.text.prefix(40)) is within the document's bound: \(error)")
                        #expect(accepted || error.field == shown, "\(error)")
                    }
                    probed += 1
                }
            }
        }
        #expect(probed >= 4, "every op has bounded fields")
        #expect(variant["additionalProperties"] == false)
        #expect(variant["required"]?.text.contains("callback_url") == (mode == .async))
    }

    @Test func everyReferenceResolvesAndTheVersionIsTheBuilds() {
        #expect(Self.document["info"]?["version"] == "9.9.9 (test)")
        var refs: [String] = []
        func walk(_ v: JSONValue) {
            switch v {
            case .object(let o):
                if let ref = o["$ref"]?.stringValue { refs.append(ref) }
                o.values.forEach(walk)
            case .array(let a): a.forEach(walk)
            default: break
            }
        }
        walk(Self.document)
        #expect(refs.contains("#/components/schemas/SyncRequest") && refs.contains("#/components/schemas/AsyncRequest"))
        for ref in Set(refs) {
            #expect(DocsPage.resolve(["$ref": .string(ref)], in: Self.document)["$ref"] == nil, "\(ref) resolves")
        }
    }
}

extension APITests {
    /// The bounds typed into the document's parameters are the handlers': at the bound accepted, past it refused.
    @Test func openAPIParameterBoundsAreTheHandlers() throws {
        let document = OpenAPIDocumentTests.document
        func parameter(_ path: String, _ method: String, _ name: String) -> JSONValue? {
            guard case .array(let list)? = document["paths"]?[path]?[method]?["parameters"] else { return nil }
            return list.map { DocsPage.resolve($0, in: document) }.first { $0["name"]?.stringValue == name }?["schema"]
        }
        let limit = try #require(parameter("/requests", "get", "limit")?["maximum"]?.intValue)
        #expect(call("GET", "/requests", query: ["limit": "\(limit)"], client: "127.0.0.1").status == 200)
        let over = call("GET", "/requests", query: ["limit": "\(limit + 1)"], client: "127.0.0.1")
        #expect(over.status == 400 && over.json["error"]?["field"] == "limit")

        let key = try #require(parameter("/async", "post", "Idempotency-Key")?["maxLength"]?.intValue)
        let headers = ["content-type": "application/json"]
        #expect(call("POST", "/async", body: asyncBody, headers: headers.merging(["idempotency-key": String(repeating: "k", count: key)]) { $1 }).status == 202)
        let long = call("POST", "/async", body: asyncBody, headers: headers.merging(["idempotency-key": String(repeating: "k", count: key + 1)]) { $1 })
        #expect(long.status == 400, "\(long.json.text)")
    }
}
