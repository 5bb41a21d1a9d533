import Config

extension RetryPolicy {
    public init(settings: Settings) {
        self.init(schedule: settings.retrySchedule, jitter: settings.retryJitter)
    }
}

extension WebhookSigner {
    /// Signs with the configured secret(s); `fallback` is used when WORKFCGI_WEBHOOK_SECRET is unset.
    public init(settings: Settings, fallback: String) throws(ConfigError) {
        let secrets = [settings.webhookSecret ?? fallback] + (settings.webhookSecretPrevious.map { [$0] } ?? [])
        do {
            try self.init(secrets: secrets)
        } catch {
            throw ConfigError(variable: "WORKFCGI_WEBHOOK_SECRET", message: error.description)
        }
    }
}

extension HostGate.Options {
    public init(settings: Settings) {
        self.init(
            concurrency: settings.hostConcurrency, threshold: settings.breakerThreshold,
            cooldownMillis: Int64(settings.breakerCooldownSeconds * 1000))
    }
}
