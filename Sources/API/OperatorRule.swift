import CallbackPolicy
import Config
import FastCGI

/// Who is an operator, decided by workfcgi itself from what the front end passes, so the boundary holds
/// whatever the front end's own configuration says: the client address (REMOTE_ADDR) in
/// WORKFCGI_OPERATOR_ADDRESSES, and a Host header (required) naming one of WORKFCGI_OPERATOR_HOSTS (a page on another name,
/// even one rebound to a loopback address, is not the operator's). A request that changes state must also
/// not come from a cross-site browser page: its Origin, when sent, is the operator host itself.
public struct OperatorRule: Sendable {
    public let addresses: [CIDR]

    /// The operator host names, lower case (IPv6 literals in brackets, as in a Host header), as bytes: compared
    /// without building strings.
    private let hostBytes: [[UInt8]]

    public init(addresses: [CIDR], hosts: [String]) {
        self.addresses = addresses
        hostBytes = hosts.map { Array($0.lowercased().utf8) }
    }

    public init(settings: Settings) throws(ConfigError) {
        self.init(addresses: try CIDR.list(settings.operatorAddresses, variable: "WORKFCGI_OPERATOR_ADDRESSES"), hosts: settings.operatorHosts)
    }

    /// nil when the request may use an operator endpoint, else why not (for the 403).
    func refusal(_ request: HTTPRequest, changesState: Bool) -> String? {
        guard let address = Self.clientAddress(request.remoteAddress), addresses.contains(where: address.isIn) else {
            return "operator endpoint: not allowed from this address (WORKFCGI_OPERATOR_ADDRESSES)"
        }
        // The Host header names the server only when the target is a path: an absolute-form target
        // (`GET http://evil.example/ui`) names its own, which a front end may prefer.
        if let target = request.target, target.utf8.first != UInt8(ascii: "/") {
            return "operator endpoint: the request target must be a path"
        }
        if !request.repeatedHeaders.isEmpty && Self.singleHeaders.contains(where: request.repeatedHeaders.contains) {
            return "operator endpoint: Host, Origin and Sec-Fetch-Site may each be sent once"
        }
        guard let host = request.headers["host"], admits(authority: host, serverPort: request.serverPort) else {
            return "operator endpoint: not served for this Host (WORKFCGI_OPERATOR_HOSTS)"
        }
        guard changesState else { return nil }
        // A browser names the page a request comes from; a cross-site one must not change anything, even with
        // a "simple" request that needs no preflight (a form, or fetch with text/plain).
        if let site = request.headers["sec-fetch-site"], site != "same-origin" && site != "none" {
            return "cross-site request refused (Sec-Fetch-Site: \(site))"
        }
        if let origin = request.headers["origin"] {
            let lower = origin.lowercased()
            let authority = lower.hasPrefix("https://") ? lower.dropFirst(8) : lower.hasPrefix("http://") ? lower.dropFirst(7) : nil
            guard let authority, let host = request.headers["host"]?.lowercased(), authority == host else {
                return "cross-site request refused: Origin \(origin) is not this operator host"
            }
        }
        return nil
    }

    private static let singleHeaders = ["host", "origin", "sec-fetch-site"]

    /// Whether the request comes from an operator (for what a public endpoint shows).
    func isOperator(_ request: HTTPRequest) -> Bool { refusal(request, changesState: false) == nil }

    /// A Host header's name among the operator hosts, and its port (if any) the one the front end received the request on.
    /// One pass over the bytes, nothing allocated: with Array, Substring and String(decoding:) this cost
    /// 6,300 instructions of a /healthz from an operator address (callgrind).
    func admits(authority: String, serverPort: Int?) -> Bool {
        let bytes = authority.utf8
        var nameEnd = bytes.endIndex
        var portStart: String.UTF8View.Index?
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            nameEnd = bytes.index(after: close)
            if nameEnd != bytes.endIndex {
                guard bytes[nameEnd] == UInt8(ascii: ":") else { return false }
                portStart = bytes.index(after: nameEnd)
            }
        } else if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            nameEnd = colon
            portStart = bytes.index(after: colon)
        }
        var name = bytes[bytes.startIndex..<nameEnd]
        if name.last == UInt8(ascii: ".") { name = name.dropLast() }
        let lower = { (b: UInt8) -> UInt8 in (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b) ? b + 32 : b }
        guard hostBytes.contains(where: { $0.count == name.count && zip($0, name).allSatisfy { $0 == lower($1) } }) else { return false }
        if let portStart {
            let digits = bytes[portStart...]
            var port = 0
            guard (1...5).contains(digits.count), digits.first != UInt8(ascii: "0") else { return false }
            for d in digits {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) else { return false }
                port = port * 10 + Int(d - UInt8(ascii: "0"))
            }
            guard port <= 65_535 else { return false }
            if let serverPort, port != serverPort { return false }
        }
        return true
    }

    /// REMOTE_ADDR as an address; an IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 one.
    static func clientAddress(_ text: String) -> IPAddress? {
        guard let address = IPAddress(text) else { return nil }
        if address.bytes.count == 16, address.bytes[0..<10].allSatisfy({ $0 == 0 }), address.bytes[10] == 0xff, address.bytes[11] == 0xff {
            return IPAddress(bytes: Array(address.bytes[12...]))
        }
        return address
    }
}
