import Foundation
import Harness
import Testing

/// The API description is valid OpenAPI 3.1 and true: schemathesis drives the live stack through nginx from
/// it and finds no 5xx and no answer outside the schema. Both tools come from PyPI (scripts/setup --for-tests).
@Suite(.serialized) struct OpenAPITests {
    static let python = ["/usr/bin/env", "python3"]

    @Test func theDocumentIsValidAndTheDocsPageRendersIt() throws {
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        defer { stack.stopAll() }
        let client = HTTPClient()
        let served = try client.get(stack.baseURL + "/openapi.json")
        #expect(served.status == 200 && served.headers["content-type"] == "application/json")
        let file = stack.directory.appendingPathComponent("openapi.json")
        try Data(served.text.utf8).write(to: file)
        let check = try Stack.run("/usr/bin/env", ["python3", "-m", "openapi_spec_validator", file.path])
        #expect(check.status == 0, "\(check.output)")

        let docs = try client.get(stack.baseURL + "/docs")
        #expect(docs.status == 200 && docs.headers["content-type"]?.hasPrefix("text/html") == true)
        #expect(!docs.text.contains("<script"), "no scripts")
        let paths = (served.json?["paths"] as? [String: Any])?.keys.sorted() ?? []
        #expect(paths.count >= 13)
        for path in paths { #expect(docs.text.contains("<code>\(path)</code>"), "\(path) on the page") }
    }

    @Test func schemathesisFindsNoServerErrorAndNoAnswerOutsideTheSchema() throws {
        // Rate limit off and bounds wide: the run checks answers, not the limits (they have their own tests).
        let stack = try Stack(
            settings: ["WORKFCGI_BACKLOG_LIMIT": "1000000", "WORKFCGI_CLIENT_BACKLOG_LIMIT": "1000000", "WORKFCGI_RETRY_SCHEDULE": "none"],
            rate: "100000r/s", burst: 100_000)
        try stack.start()
        defer { stack.stopAll() }
        let result = try Stack.run(
            "/usr/bin/env",
            [
                "schemathesis", "run", stack.baseURL + "/openapi.json", "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples", "25", "--workers", "1", "--seed", "1", "--request-timeout", "30", "--no-color",
                "--suppress-health-check", "all", "--max-failures", "5",
            ])
        #expect(result.status == 0, "\(result.output.suffix(6000))")
        // Every operation was exercised (1,032 cases at the time of writing: coverage, fuzzing and stateful phases).
        #expect(result.output.contains("Tested: 14") && result.output.contains(" passed"), "\(result.output.suffix(2000))")
    }
}
