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
