import Foundation
import Testing

@testable import CallbackPolicy

/// Replays Tests/Fuzz/callback-url through the URL policy (no network: a fixed resolver).
@Suite struct CallbackURLFuzzCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/callback-url")

    @Test func corpusReplays() throws {
        let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [1...65_535])
        let files = try FileManager.default.contentsOfDirectory(at: Self.directory, includingPropertiesForKeys: nil)
        #expect(files.count >= 4)
        for file in files {
            let text = String(decoding: try Data(contentsOf: file), as: UTF8.self)
            if let target = try? policy.vet(text, resolve: CallbackURLPolicyTests.fakeDNS) {
                #expect(target.address.map(policy.permits) == true, "\(file.lastPathComponent)")
            }
        }
    }
}
