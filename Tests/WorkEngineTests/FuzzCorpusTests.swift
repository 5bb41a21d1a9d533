import Foundation
import Testing

@testable import WorkEngine

/// Replays Tests/Fuzz/request (fuzzing seeds and every input that once broke something) through the
/// parser: each must be accepted or refused with a ValidationError, and what is accepted must round-trip.
@Suite struct FuzzCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/request")

    @Test func corpusReplays() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.directory, includingPropertiesForKeys: nil)
        #expect(files.count >= 5)
        for file in files {
            let bytes = Array(try Data(contentsOf: file))
            for mode in [RequestMode.sync, .async] {
                do {
                    let parsed = try RequestParser.parse(body: bytes, mode: mode)
                    #expect(try RequestParser.parse(body: Array(parsed.input.text.utf8), mode: mode) == parsed, "\(file.lastPathComponent)")
                } catch {
                    #expect(!error.message.isEmpty)
                }
            }
        }
    }
}
