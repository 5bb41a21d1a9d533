import Foundation
import Testing

@testable import JSON

@Suite struct JSONParserTests {
    func parse(_ text: String) -> JSONValue? { try? JSONParser.parse(Array(text.utf8)) }

    @Test func acceptsStrictJSON() {
        #expect(parse(#" {"a": [1, -2.5e3, true, false, null, "x\"\\\/\n\u00e9\ud83d\ude00"]} "#)
            == ["a": [1, -2500, true, false, nil, "x\"\\/\né😀"]])
        #expect(parse("0") == 0)
        #expect(parse("-0.0") == .number(-0.0))
        #expect(parse(#""""#) == "")
        #expect(parse("{}") == [:])
        #expect(parse("[]") == [])
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", #"{"a":1,}"#, "01", "1.", ".5", "+1", "1e", "NaN", "Infinity", "1e400", "-", "tru", "nul",
        "'a'", #"{"a" 1}"#, #"{a: 1}"#, #"{"a":1 "b":2}"#, #"{"a":1,"a":2}"#, "[1] [2]", "// c\n1", #""\x""#,
        "\"a\u{01}\"", #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\u12G4""#, "\"unterminated",
    ])
    func refuses(text: String) {
        #expect(parse(text) == nil, "accepted \(text)")
    }

    @Test func refusesInvalidUTF8() {
        #expect((try? JSONParser.parse([0x22, 0xff, 0x22])) == nil)
        #expect((try? JSONParser.parse([0x22, 0xc3, 0x22])) == nil)
        #expect((try? JSONParser.parse([0x22, 0xed, 0xa0, 0x80, 0x22])) == nil)  // encoded surrogate
    }

    @Test func limitsNesting() {
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        #expect(parse(ok) != nil)
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(parse(deep) == nil)
    }

    @Test func roundTripsThroughText() {
        let value: JSONValue = ["b": [1, 2.5, "é\n"], "a": nil, "c": ["d": false]]
        #expect(parse(value.text) == value)
        #expect(value.text == #"{"a":null,"b":[1,2.5,"é\n"],"c":{"d":false}}"#)
    }
}

/// The hand-written serializer must write exactly what Foundation's JSONEncoder wrote before it (stored
/// inputs are compared as text for idempotency keys, and records written by older versions stay equal).
@Suite struct JSONTextTests {
    static func encoderText(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }

    static let samples: [JSONValue] = [
        .null, true, false, 0, -0.0, 1, -1, 42, 0.1, -2.5, 1e-7, 123456789012, 1e15, 1e16, 1.5e300, 9007199254740993, 3.141592653589793,
        "", "plain", "quote \" backslash \\ slash / tab \t newline \n cr \r bell \u{7} nul \u{0} esc \u{1b} del \u{7f}",
        "unicode é ΐ 😀 \u{2028} \u{2029} \u{feff}",
        [1, "two", [3, [4]], ["k": nil]],
        ["b": 1, "a": ["z": true, "y": [1.25, "x"]], "": "", "ä": 2, "A": 3],
    ]

    @Test func matchesJSONEncoder() {
        for value in Self.samples {
            #expect(value.text == Self.encoderText(value), "\(Self.encoderText(value))")
        }
        for byte in UInt8(0)...UInt8(0x7f) {
            let value = JSONValue.string(String(decoding: [byte], as: UTF8.self))
            #expect(value.text == Self.encoderText(value), "byte \(byte)")
        }
    }
}
