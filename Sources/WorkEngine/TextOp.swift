import Digest
import JSON

/// The text op. `processed_text` is the words in reverse order, upper-cased, joined by single spaces;
/// that line repeated `count` times, again joined by a space.
enum TextOp {
    static func run(text: String, count: Int) -> JSONValue {
        let words = text.split(whereSeparator: \.isWhitespace)
        let line = words.reversed().map { $0.uppercased() }.joined(separator: " ")
        let processed = Array(repeating: line, count: count).joined(separator: " ")
        return [
            "input_hash": .string(Digest.sha256Hex(text)),
            "word_count": .number(Double(words.count)),
            "character_count": .number(Double(text.count)),
            "processed_text": .string(processed),
            "iterations": .number(Double(count)),
        ]
    }
}
