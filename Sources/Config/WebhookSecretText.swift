import Foundation

/// The one rule for a webhook secret's text, Standard Webhooks' `whsec_` + base64 of at least 24 bytes:
/// Settings checks WORKFCGI_WEBHOOK_SECRET(_PREVIOUS) with it (so `--check-config` refuses what deliveryd
/// would), the secret file is read through it, and the signer takes its key from it.
public enum WebhookSecretText {
    public static let rule = "whsec_ followed by base64 of at least 24 bytes"

    /// The key bytes, or nil when the text is not a secret.
    public static func key(_ secret: String) -> [UInt8]? {
        guard secret.hasPrefix("whsec_"), let data = Data(base64Encoded: String(secret.dropFirst(6))), data.count >= 24 else {
            return nil
        }
        return Array(data)
    }
}
