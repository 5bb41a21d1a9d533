import Digest

/// UUIDv7 ids: 48 bits of Unix milliseconds, then random bits. Time-ordered, so inserts append to the
/// primary-key b-tree and `id < cursor` pages by time.
public enum RequestID {
    public static func make(now: UnixMillis = WallClock.nowMillis()) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in 6..<16 { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
        let ms = UInt64(max(0, now))
        for i in 0..<6 { bytes[i] = UInt8((ms >> (8 * (5 - UInt64(i)))) & 0xff) }
        bytes[6] = 0x70 | (bytes[6] & 0x0f)  // version 7
        bytes[8] = 0x80 | (bytes[8] & 0x3f)  // RFC 4122 variant
        // Written as bytes, not String(format:) per byte: that cost more than the whole rest of an /async
        // request (callgrind).
        var text = [UInt8]()
        text.reserveCapacity(36)
        for (i, group) in [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].enumerated() {
            if i > 0 { text.append(UInt8(ascii: "-")) }
            Digest.appendHex(bytes[group], to: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Whether `text` has the shape of an id we issue (guards path parameters before they reach SQL).
    public static func isValid(_ text: String) -> Bool {
        // Bytes, not Characters: Character.isHexDigit and isNumber accept full-width digits and letters, which
        // would give one id a second spelling.
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard b == UInt8(ascii: "-") else { return false }
            } else {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(b) else { return false }
            }
        }
        return true
    }
}
