import CCurl

/// A URL as libcurl's own parser (curl_url) reads it: what curl would connect to. The policy checks its
/// verdict against this, so the policy and the client can never disagree on the host or port.
public struct CurlURL: Sendable, Equatable {
    public var scheme: String
    /// Lower case, without IPv6 brackets or a trailing dot: the form the policy uses.
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        guard let handle = curl_url() else { return nil }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, text, 0) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var out: UnsafeMutablePointer<CChar>?
            guard curl_url_get(handle, which, &out, flags) == CURLUE_OK, let out else { return nil }
            defer { curl_free(out) }
            return String(cString: out)
        }
        guard let scheme = part(CURLUPART_SCHEME), var host = part(CURLUPART_HOST),
            let portText = part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT)), let port = Int(portText)
        else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.hasSuffix(".") { host.removeLast() }
        self.scheme = scheme.lowercased()
        self.host = host.lowercased()
        self.port = port
    }

    /// Whether curl's host is `host`: the same name, or the same address however it is written.
    public func names(_ other: String) -> Bool {
        if let a = IPAddress(host), let b = IPAddress(other) { return a == b }
        return host == other
    }
}
