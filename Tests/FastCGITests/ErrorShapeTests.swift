import FastCGI
import Foundation
import JSON
import Testing

/// One error shape: what `HTTPResponse.error` writes, and the static bodies the front ends answer with
/// themselves (nginx's `return` lines in site.conf, the files in frontends/errors/), which cannot call it.
@Suite struct ErrorShapeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theWrittenShape() throws {
        let response = HTTPResponse.error(422, code: "out_of_range", message: "too big", field: "records")
        let body = try JSONValue.parse(response.body)
        #expect(HTTPResponse.isErrorDocument(body))
        #expect(body == ["error": ["code": "out_of_range", "message": "too big", "field": "records"]])
        #expect(HTTPResponse.isErrorDocument(try JSONValue.parse(HTTPResponse.error(403, code: "forbidden", message: "no").body)))
        // The check refuses other shapes.
        #expect(!HTTPResponse.isErrorDocument(["error": "forbidden"]))
        #expect(!HTTPResponse.isErrorDocument(["error": ["code": "x"]]))
        #expect(!HTTPResponse.isErrorDocument(["error": ["code": "x", "message": "y", "detail": "z"]]))
        #expect(!HTTPResponse.isErrorDocument(["code": "x", "message": "y"]))
    }

    @Test func nginxsBodiesHaveIt() throws {
        let conf = try String(contentsOf: Self.root.appendingPathComponent("nginx/site.conf"), encoding: .utf8)
        var bodies = 0
        for line in conf.split(separator: "\n") where line.contains("return ") && line.contains("'{") {
            let start = try #require(line.firstIndex(of: "'"))
            let end = try #require(line.lastIndex(of: "'"))
            let text = line[line.index(after: start)..<end].replacingOccurrences(of: "\\n", with: "")
            #expect(HTTPResponse.isErrorDocument(try JSONValue.parse(Array(text.utf8))), "\(line)")
            bodies += 1
        }
        #expect(bodies >= 10, "site.conf's error bodies found")
    }

    @Test func theOtherFrontEndsFilesHaveIt() throws {
        let folder = Self.root.appendingPathComponent("frontends/errors")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".html") }
        #expect(files.count >= 10)
        for file in files {
            let bytes = Array(try Data(contentsOf: folder.appendingPathComponent(file)))
            #expect(HTTPResponse.isErrorDocument(try JSONValue.parse(bytes)), "\(file)")
        }
    }
}
