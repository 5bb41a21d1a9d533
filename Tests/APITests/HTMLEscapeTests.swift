import Testing

@testable import API

/// The pages' one escape holds for any text from outside, including characters that combine with the next
/// one into a single grapheme cluster (a walk over Characters let U+0600 + "<" through raw).
@Suite struct HTMLEscapeTests {
    @Test func noMarkupCharacterSurvivesWhateverPrecedesIt() {
        let joiners = ["\u{0600}", "\u{0301}", "\u{200D}", "\u{FE0F}", "\u{1F1E6}", "e\u{0301}", "\r", "\u{0}"]
        for joiner in joiners {
            for markup in ["<", ">", "\"", "'", "&"] {
                let escaped = HTML.escape(joiner + markup + "h1" + joiner + markup)
                #expect(!escaped.unicodeScalars.contains { "<>\"'".unicodeScalars.contains($0) }, "\(escaped.unicodeScalars.map { $0.value })")
            }
        }
        let attack = "\u{0600}<meta http-equiv=refresh content=0;url=https://evil.example/\u{0600}>"
        #expect(HTML.escape(attack) == "\u{0600}&lt;meta http-equiv=refresh content=0;url=https://evil.example/\u{0600}&gt;")
        #expect(HTML.escape("a&b <c> \"d\" 'e' é") == "a&amp;b &lt;c&gt; &quot;d&quot; &#39;e&#39; é")
    }
}
