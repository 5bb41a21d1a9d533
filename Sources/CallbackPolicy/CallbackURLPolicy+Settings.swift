// IPAddress and CIDR live in Config (the settings parse them); importers of the policy keep seeing them.
@_exported import Config

extension CallbackURLPolicy {
    /// The policy the settings describe; refuses malformed CIDRs naming the variable.
    public init(settings: Settings) throws(ConfigError) {
        let cidrs = try CIDR.list(settings.callbackAllowCIDRs, variable: "WORKFCGI_CALLBACK_ALLOW_CIDRS")
        self.init(allowPrivate: settings.allowPrivateCallbacks, allowedPorts: settings.callbackPorts, allowCIDRs: cidrs)
    }
}
