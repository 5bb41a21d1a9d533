import Digest
import Foundation

/// Standard Webhooks verification of a received callback: `webhook-signature` holds one or more
/// `v1,BASE64` entries, each HMAC-SHA256 of "id.timestamp.body" under the secret (`whsec_` + base64 key).
struct SignatureCheck: Sendable {
    let key: [UInt8]

    init?(secret: String) {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        guard let key = Data(base64Encoded: encoded), !key.isEmpty else { return nil }
        self.key = Array(key)
    }

    func verifies(id: String, timestamp: String, body: [UInt8], header: String) -> Bool {
        let expected = Digest.hmacSHA256(key: key, message: Array("\(id).\(timestamp).".utf8) + body)
        for entry in header.split(separator: " ") {
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, parts[0] == "v1", let given = Data(base64Encoded: String(parts[1])) else { continue }
            if Digest.constantTimeEqual(Array(given), expected) { return true }
        }
        return false
    }
}
