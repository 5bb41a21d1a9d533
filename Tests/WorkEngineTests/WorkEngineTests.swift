import Digest
import JSON
import Testing

@testable import WorkEngine

/// Fixed vectors, computed independently (Python hashlib) from the definitions in the README.
@Suite struct WorkEngineTests {
    let engine = WorkEngine(sleep: { _ in })

    @Test(arguments: [
        ("hello", 1, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        ("hello", 2, "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"),
        ("hello", 50_000, "f6ff07025a2c5702133ffdad8684ed8a00f62d716792347fa17c1acd6d00d96d"),
        ("", 3, "aa6ac2d4961882f42a345c7615f4133dde8e6d6e7c1b6b40ae4ff6ee52c393d0"),
    ])
    func iteratedHash(input: String, iterations: Int, expected: String) {
        let result = engine.run(.hash(input: input, iterations: iterations))
        #expect(result == ["hash": .string(expected), "iterations": .number(Double(iterations))])
    }

    @Test func text() {
        let result = engine.run(.text(text: "Hello world", count: 3))
        #expect(result["input_hash"] == "64ec88ca00b268e5ba1a35678a1b5316d212f4f366b2477232534a8aeca37f3c")
        #expect(result["word_count"] == 2)
        #expect(result["character_count"] == 11)
        #expect(result["processed_text"] == "WORLD HELLO WORLD HELLO WORLD HELLO")
        #expect(result["iterations"] == 3)
    }

    /// The worst inputs the byte bounds allow still give results under Limits.resultBytes: no request can
    /// turn a small body into a huge response or a huge stored record.
    static let worstTexts: [String: String] = [
        "control characters (6 bytes each once escaped)": String(repeating: "\u{1}", count: 10_000),
        "ΐ (upper-cases to three code points)": String(repeating: "\u{390}", count: 5_000),
        "ß and spaces": String(repeating: "ß ", count: 3_333),
        "one grapheme of 10,000 bytes": "e" + String(repeating: "\u{301}", count: 4_999),
    ]

    @Test(arguments: worstTexts.keys.sorted())
    func worstCaseTextResultStaysBounded(kind: String) throws {
        let text = try #require(Self.worstTexts[kind])
        let body = JSONValue.object(["text": .string(text), "count": 20]).text
        let parsed = try RequestParser.parse(body: Array(body.utf8), mode: .sync)
        let result = engine.run(parsed.spec).text
        #expect(result.utf8.count <= Limits.resultBytes, "\(result.utf8.count) bytes")
        #expect(result.utf8.count <= parsed.spec.resultBytesBound, "the reserve held for it at accept time")
    }

    /// The reserve an /async job holds for its result is never smaller than the result, for every op, and
    /// close to it for plain text (or the front door would refuse long before the store is full).
    @Test func resultBytesBoundHoldsForEveryOp() {
        let specs: [JobSpec] = [
            .hash(input: String(repeating: "\u{1}", count: 1000), iterations: 1), .report(records: 1000, name: String(repeating: "\"", count: 100)),
            .text(text: "", count: 20), .text(text: "a \"b\" \\ c\td", count: 7), .text(text: String(repeating: "ab ", count: 3000), count: 20),
        ] + JobSpec.ComputeKind.allCases.map { .compute(kind: $0, complexity: 1) }
        for spec in specs {
            let size = WorkEngine(sleep: { _ in }).run(spec).text.utf8.count
            #expect(size <= spec.resultBytesBound, "\(spec.op): \(size) > \(spec.resultBytesBound)")
        }
        let plain = JobSpec.text(text: String(repeating: "ab ", count: 3000), count: 20)
        #expect(plain.resultBytesBound < engine.run(plain).text.utf8.count * 2, "ASCII text is reserved about as it is")
    }

    @Test func textBoundIsInBytes() {
        // 3,000 characters of 4 bytes each: under 10,000 characters, over 10,000 bytes.
        let body = JSONValue.object(["text": .string(String(repeating: "😀", count: 3_000))]).text
        #expect(throws: ValidationError.self) { try RequestParser.parse(body: Array(body.utf8), mode: .sync) }
    }

    @Test func textCountsGraphemesAndCollapsesWhitespace() {
        let result = engine.run(.text(text: "  café\t\nnaïve  ", count: 1))
        #expect(result["word_count"] == 2)
        #expect(result["character_count"] == 15)
        #expect(result["processed_text"] == "NAÏVE CAFÉ")
    }

    @Test func reportIsDeterministicAndSleepsPerRecord() {
        let slept = SleepCounter()
        let engine = WorkEngine(sleep: { ms in slept.add(ms) })
        let result = engine.run(.report(records: 20, name: "march"))
        #expect(result["report_id"] == "rpt_fa75b5c25fc08979")
        #expect(result["checksum"] == "73423a35561c9ee04246dc1913b84e3fa15a61c09fe61c70dc90cc30de7198e3")
        #expect(result["status"] == "generated")
        #expect(slept.total == 200)
    }

    @Test func primeKernel() {
        #expect(ComputeOp.nthPrime(1) == 2)
        #expect(ComputeOp.nthPrime(2) == 3)
        #expect(ComputeOp.nthPrime(10) == 29)
        #expect(ComputeOp.nthPrime(1000) == 7919)
    }

    @Test func matrixKernel() {
        let small = ComputeOp.matrixProduct(size: 4, seed: 1)
        #expect(small.trace == 4_580_571)
        #expect(small.checksum == "595cf9ac633a128d79ac5609a8bc05b967384010037d0037f6c2c9ed18c480af")
        let larger = ComputeOp.matrixProduct(size: 10, seed: 3)
        #expect(larger.trace == 23_451_568)
        #expect(larger.checksum == "4ad89b63a018b8a9a95941f8f7dd84faa579eacdc6e16e15aa341e4b31c3462c")
    }

    @Test func transformKernel() {
        #expect(ComputeOp.transform(rounds: 3) == "88cb226d627f529d8e61171f4400e7d3e237bf7cccdd65064d2fe203e8db3eab")
    }

    @Test func sizesGrowFiftyfoldInTimeFromComplexityOneToTen() {
        #expect(ComputeOp.scale(1) == 1)
        #expect(abs(ComputeOp.scale(10) - 50) < 1e-9)
        #expect(ComputeOp.size(.hash, complexity: 10) == 50 * ComputeOp.size(.hash, complexity: 1))
        for kind in JobSpec.ComputeKind.allCases {
            let sizes = (1...10).map { ComputeOp.size(kind, complexity: $0) }
            #expect(sizes == sizes.sorted() && Set(sizes).count == 10, "\(kind) sizes must grow: \(sizes)")
        }
    }

    @Test func computeResultNamesItsWork() {
        let result = engine.run(.compute(kind: .prime, complexity: 1))
        #expect(result["operation"] == "prime")
        #expect(result["n"] == .number(Double(ComputeOp.size(.prime, complexity: 1))))
        #expect(result["prime"] == .number(Double(ComputeOp.nthPrime(ComputeOp.size(.prime, complexity: 1)))))
    }

    @Test func hmacMatchesRFC4231Case2() {
        let mac = Digest.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(Digest.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(Digest.hmacSHA256(key: [], message: []).count == 32)
    }
}

final class SleepCounter: @unchecked Sendable {
    private var value = 0
    func add(_ ms: Int) { value += ms }
    var total: Int { value }
}
