import Foundation

/// The Standard Webhooks signature: `webhook-signature` holds space-separated `v1,BASE64` entries, each the
/// HMAC-SHA256 of "id.timestamp.body" under one secret's key. deliveryd signs (Delivery's `WebhookSigner`);
/// receivers verify (loadgen, the tests): both through this, so the two sides cannot drift apart.
public enum StandardWebhooks {
    /// The header value: one entry per key (several while a secret is rotated).
    public static func signature(keys: [[UInt8]], id: String, timestamp: String, body: [UInt8]) -> String {
        let message = Array("\(id).\(timestamp).".utf8) + body
        return keys.map { "v1," + Data(Digest.hmacSHA256(key: $0, message: message)).base64EncodedString() }.joined(separator: " ")
    }

    /// Whether any `v1` entry of `header` is the signature under one of `keys`; compared in constant time.
    public static func verifies(keys: [[UInt8]], id: String, timestamp: String, body: [UInt8], header: String) -> Bool {
        let message = Array("\(id).\(timestamp).".utf8) + body
        let expected = keys.map { Digest.hmacSHA256(key: $0, message: message) }
        for entry in header.split(separator: " ") {
            guard entry.hasPrefix("v1,"), let given = Data(base64Encoded: String(entry.dropFirst(3))) else { continue }
            if expected.contains(where: { Digest.constantTimeEqual($0, Array(given)) }) { return true }
        }
        return false
    }
}
