import Config
import Digest
import Foundation

/// Signs callbacks the Standard Webhooks way: `webhook-signature: v1,<base64 HMAC-SHA256 of
/// "{id}.{timestamp}.{body}">`, one signature per active secret (space-separated) during rotation.
public struct WebhookSigner: Sendable {
    public struct InvalidSecret: Error, CustomStringConvertible {
        public var description: String
    }

    private let keys: [[UInt8]]

    /// `secrets` are `whsec_<base64>` strings, current first.
    public init(secrets: [String]) throws(InvalidSecret) {
        var keys: [[UInt8]] = []
        for secret in secrets {
            guard let key = Self.key(from: secret) else {
                throw InvalidSecret(description: "webhook secret must be \(WebhookSecretText.rule)")
            }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw InvalidSecret(description: "no webhook secret") }
        self.keys = keys
    }

    /// A new random secret in `whsec_` form (32 bytes).
    public static func generateSecret() -> String {
        "whsec_" + Data(Digest.randomBytes(32)).base64EncodedString()
    }

    static func key(from secret: String) -> [UInt8]? { WebhookSecretText.key(secret) }

    /// The `webhook-signature` header value.
    public func signature(id: String, timestamp: Int, body: [UInt8]) -> String {
        StandardWebhooks.signature(keys: keys, id: id, timestamp: String(timestamp), body: body)
    }

    /// Receiver side: whether any `v1` signature in `header` matches, and the timestamp is within
    /// `tolerance` seconds of `now` (replay protection). Compares in constant time.
    public func verify(id: String, timestamp: Int, body: [UInt8], header: String, now: Int, tolerance: Int = 300) -> Bool {
        guard abs(now - timestamp) <= tolerance else { return false }
        return StandardWebhooks.verifies(keys: keys, id: id, timestamp: String(timestamp), body: body, header: header)
    }
}
