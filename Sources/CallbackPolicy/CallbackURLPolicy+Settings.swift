import Config

extension CallbackURLPolicy {
    /// The policy the settings describe; refuses malformed CIDRs naming the variable.
    public init(settings: Settings) throws(ConfigError) {
        let cidrs = try CIDR.list(settings.callbackAllowCIDRs, variable: "WORKFCGI_CALLBACK_ALLOW_CIDRS")
        self.init(allowPrivate: settings.allowPrivateCallbacks, allowedPorts: settings.callbackPorts, allowCIDRs: cidrs)
    }
}

extension CIDR {
    /// Ranges from a setting's list; a malformed one is refused naming the variable.
    public static func list(_ texts: [String], variable: String) throws(ConfigError) -> [CIDR] {
        var cidrs: [CIDR] = []
        for text in texts {
            guard let cidr = CIDR(text) else {
                throw ConfigError(variable: variable, message: "'\(text)' is not an address or a CIDR like 10.1.0.0/16")
            }
            cidrs.append(cidr)
        }
        return cidrs
    }
}
