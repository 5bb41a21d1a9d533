import CCrypto

/// SHA-256 and HMAC-SHA-256 over OpenSSL's libcrypto, plus the byte helpers around them.
public enum Digest {
    /// The SHA-256 digest of `bytes` (32 bytes).
    public static func sha256<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = Array(bytes).withUnsafeBytes { input in
            out.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        precondition(ok == 1 && length == 32, "EVP_Digest(sha256) failed")
        return out
    }

    /// SHA-256 of a string's UTF-8 bytes, as lowercase hex.
    public static func sha256Hex(_ text: String) -> String {
        hex(sha256(Array(text.utf8)))
    }

    /// HMAC-SHA-256 of `message` under `key` (32 bytes).
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        // A trailing zero byte keeps both buffers non-empty (OpenSSL wants real pointers) without changing
        // the MAC: only `count - 1` message bytes are passed, and HMAC zero-pads short keys anyway.
        let k = key.isEmpty ? [0] : key
        let m = message + [0]
        k.withUnsafeBufferPointer { kp in
            m.withUnsafeBufferPointer { mp in
                out.withUnsafeMutableBufferPointer { o in
                    _ = HMAC(EVP_sha256(), kp.baseAddress, Int32(kp.count), mp.baseAddress, mp.count - 1, o.baseAddress, &length)
                }
            }
        }
        precondition(length == 32, "HMAC(sha256) failed")
        return out
    }

    /// `count` cryptographically random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "RAND_bytes failed")
        return out
    }

    /// Compares in time independent of where the inputs differ.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    @usableFromInline static let hexDigits = Array("0123456789abcdef".utf8)

    /// Lowercase hex.
    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var chars = [UInt8]()
        chars.reserveCapacity(bytes.count * 2)
        appendHex(bytes, to: &chars)
        return String(decoding: chars, as: UTF8.self)
    }

    /// Lowercase hex appended to `out`, for writers that build their text as bytes. Inlinable, so callers in
    /// other modules get it specialized for their collection (generic, it cost an /async request ~12,000
    /// instructions more).
    @inlinable public static func appendHex<C: Collection>(_ bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0f)])
        }
    }
}

extension Digest {
    /// SHA-256 applied `times` times: the digest of `input`, then the digest of that digest, and so on.
    /// Reuses one buffer, since millions of rounds are allowed.
    public static func iteratedSHA256(_ input: [UInt8], times: Int) -> [UInt8] {
        var state = sha256(input)
        guard times > 1 else { return state }
        var next = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let md = EVP_sha256()
        for _ in 1..<times {
            state.withUnsafeBytes { s in
                next.withUnsafeMutableBufferPointer { n in
                    _ = EVP_Digest(s.baseAddress, 32, n.baseAddress, &length, md, nil)
                }
            }
            swap(&state, &next)
        }
        return state
    }
}
