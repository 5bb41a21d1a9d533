import Digest
import Foundation

/// Standard Webhooks verification of a received callback (`StandardWebhooks`, as deliveryd signs), under the
/// secret given to loadgen (`whsec_` + base64 key, or the base64 alone).
struct SignatureCheck: Sendable {
    let key: [UInt8]

    init?(secret: String) {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        guard let key = Data(base64Encoded: encoded), !key.isEmpty else { return nil }
        self.key = Array(key)
    }

    func verifies(id: String, timestamp: String, body: [UInt8], header: String) -> Bool {
        StandardWebhooks.verifies(keys: [key], id: id, timestamp: timestamp, body: body, header: header)
    }
}
