import Config

extension CallbackURLPolicy {
    /// The policy the settings describe; refuses malformed CIDRs naming the variable.
    public init(settings: Settings) throws(ConfigError) {
        var cidrs: [CIDR] = []
        for text in settings.callbackAllowCIDRs {
            guard let cidr = CIDR(text) else {
                throw ConfigError(variable: "WORKFCGI_CALLBACK_ALLOW_CIDRS", message: "'\(text)' is not a CIDR like 10.1.0.0/16")
            }
            cidrs.append(cidr)
        }
        self.init(allowPrivate: settings.allowPrivateCallbacks, allowedPorts: settings.callbackPorts, allowCIDRs: cidrs)
    }
}

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
