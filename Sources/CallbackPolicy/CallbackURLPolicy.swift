import Foundation

/// A callback URL taken apart, plus the one address the request must connect to.
public struct CallbackTarget: Sendable, Equatable {
    /// The URL as the client gave it.
    public var url: String
    /// The URL curl is given: scheme, the checked host spelled canonically (lower case, no trailing dot),
    /// explicit port, then the path and query as given (no fragment).
    public var requestURL: String
    public var scheme: String
    public var host: String
    public var port: Int
    /// The checked address to connect to; the client pins the connection to it (no second lookup). Set by
    /// `check` for a literal address, by `pin` once deliveryd has resolved a name; nil until then.
    public var address: IPAddress?

    /// What the connection goes to, `1.2.3.4:80` or `[2001:db8::1]:443`: the key of the per-host gates, so
    /// many names for one address share one concurrency limit and one circuit breaker.
    public var endpoint: String {
        guard let address else { return "\(host):\(port)" }
        return address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

/// Why a callback URL is refused.
public struct CallbackURLRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// The SSRF policy for callback URLs. Pure: it never resolves a name. `check` runs when a job is accepted
/// (on workfcgi's request threads, where a lookup would hold a thread others share) and again before every
/// attempt; for a host name, deliveryd resolves it off its workers and `pin` checks every address it got.
/// Refuses non-http(s) schemes, userinfo, ambiguous numeric hosts, internal names, disallowed ports and any
/// address outside the globally reachable unicast space (`blockedRanges`).
public struct CallbackURLPolicy: Sendable {
    public var allowPrivate: Bool
    public var allowedPorts: [ClosedRange<Int>]
    /// Ranges opened explicitly even though they fall inside a blocked range.
    public var allowCIDRs: [CIDR]

    public init(allowPrivate: Bool, allowedPorts: [ClosedRange<Int>], allowCIDRs: [CIDR] = []) {
        self.allowPrivate = allowPrivate
        self.allowedPorts = allowedPorts
        self.allowCIDRs = allowCIDRs
    }

    /// Ranges no callback may reach unless opened: every block of the IANA IPv4 and IPv6 Special-Purpose
    /// Address Registries that is not globally reachable (RFC 6890 and later entries), plus the few that are
    /// but embed or relay to an IPv4 address or are anycast service addresses, never a receiver.
    public static let blockedRanges: [CIDR] = [
        // IPv4: this network, private, shared (CGN), loopback, link-local, private, IETF protocol assignments
        // (DS-Lite, NAT64 discovery, PCP/TURN anycast), TEST-NET-1, the deprecated 6to4 relay anycast, private,
        // benchmarking, TEST-NET-2, TEST-NET-3, multicast, reserved, limited broadcast.
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
        // IPv6: everything outside 2000::/3, the only space IANA allocates for global unicast. That holds ::/8
        // (::, ::1, IPv4-compatible ::/96, IPv4-mapped ::ffff:0:0/96, IPv4-translated ::ffff:0:0:0/96, all
        // reserved), 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64), 100::/64 (discard), 5f00::/16 (SRv6 SIDs),
        // fc00::/7 (unique local), fe80::/10 (link-local), fec0::/10 (former site-local), ff00::/8 (multicast)
        // and every block still reserved by the IETF.
        "::/3", "4000::/2", "8000::/1",
        // Inside 2000::/3: IETF protocol assignments (Teredo, benchmarking, ORCHID, AMT, anycast services),
        // documentation (both blocks), 6to4 (it embeds an IPv4 address).
        "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20",
    ].compactMap(CIDR.init)

    /// Whether a connection to `address` is allowed.
    public func permits(_ address: IPAddress) -> Bool {
        if allowPrivate || allowCIDRs.contains(where: address.isIn) { return true }
        return !Self.blockedRanges.contains(where: address.isIn)
    }

    /// Checks `url` completely except for what a host name resolves to: syntax, scheme, port, internal
    /// names, and a literal address against the ranges. A literal's target comes back pinned (`address` set);
    /// a name's comes back with `address` nil, to be resolved and `pin`ned before any connection. No I/O.
    public func check(_ url: String) throws(CallbackURLRefusal) -> CallbackTarget {
        let target = try Self.parse(url)
        guard allowedPorts.contains(where: { $0.contains(target.port) }) else {
            throw CallbackURLRefusal("port \(target.port) is not allowed for callbacks (WORKFCGI_CALLBACK_PORTS)")
        }
        if !allowPrivate {
            let name = target.host
            if name == "localhost" || name.hasSuffix(".localhost") || name.hasSuffix(".internal") || name.hasSuffix(".local") {
                throw CallbackURLRefusal("host \(name) is an internal name (WORKFCGI_ALLOW_PRIVATE_CALLBACKS=true allows it)")
            }
        }
        if let literal = target.address { return try pin(target, to: [literal]) }
        return target
    }

    /// `target` (from `check`) pinned to the first of `addresses`, what its host resolved to. Every address
    /// must pass: a name with one public and one private address is refused outright.
    public func pin(_ target: CallbackTarget, to addresses: [IPAddress]) throws(CallbackURLRefusal) -> CallbackTarget {
        guard let first = addresses.first else { throw CallbackURLRefusal("host \(target.host) has no address") }
        for address in addresses where !permits(address) {
            let what = target.address == nil ? "resolves to \(address), a" : "is a"
            throw CallbackURLRefusal(
                "host \(target.host) \(what) private or reserved address "
                    + "(WORKFCGI_ALLOW_PRIVATE_CALLBACKS=true, or a range in WORKFCGI_CALLBACK_ALLOW_CIDRS, allows it)")
        }
        var pinned = target
        pinned.address = first
        return pinned
    }

    /// `check`, then `pin` to what `resolve` answers for a name: the whole check in one call, for tests and
    /// the fuzzer, whose resolvers answer from a table.
    public func vet(
        _ url: String, resolve: (String) throws(CallbackURLRefusal) -> [IPAddress]
    ) throws(CallbackURLRefusal) -> CallbackTarget {
        let target = try check(url)
        if target.address != nil { return target }
        return try pin(target, to: try resolve(target.host))
    }

    /// Syntax only: scheme, userinfo, host form and port. No resolution.
    public static func parse(_ url: String) throws(CallbackURLRefusal) -> CallbackTarget {
        // Bytes, not Characters: the URL is printable ASCII once past this guard, and Character scanning with
        // Foundation's range(of:) cost more than the rest of an /async request (callgrind).
        let bytes = Array(url.utf8)
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw CallbackURLRefusal("URL must be printable ASCII without spaces (percent-encode the rest)")
        }
        guard let schemeEnd = bytes.indices.first(where: { bytes[$0...].starts(with: "://".utf8) }) else {
            throw CallbackURLRefusal("URL must start with http:// or https://")
        }
        let scheme = text(bytes[..<schemeEnd]).lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw CallbackURLRefusal("scheme \(scheme) is not allowed; use http or https")
        }
        let rest = bytes[(schemeEnd + 3)...]
        let authorityEnd = rest.firstIndex(where: { $0 == ascii("/") || $0 == ascii("?") || $0 == ascii("#") }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var pathAndQuery = text(rest[authorityEnd...].prefix { $0 != ascii("#") })
        if pathAndQuery.isEmpty || pathAndQuery.utf8.first == ascii("?") { pathAndQuery = "/" + pathAndQuery }
        if authority.contains(ascii("@")) { throw CallbackURLRefusal("URL must not contain user information") }
        if authority.contains(ascii("\\")) { throw CallbackURLRefusal("URL host must not contain a backslash") }

        let bracketed = authority.first == ascii("[")
        var host: ArraySlice<UInt8>
        var portText: ArraySlice<UInt8>?
        if bracketed {
            guard let close = authority.firstIndex(of: ascii("]")) else { throw CallbackURLRefusal("unterminated IPv6 address") }
            host = authority[(authority.startIndex + 1)..<close]
            let after = authority[(close + 1)...]
            if !after.isEmpty {
                guard after.first == ascii(":") else { throw CallbackURLRefusal("unexpected text after IPv6 address") }
                portText = after.dropFirst()
            }
            if host.contains(ascii("%")) { throw CallbackURLRefusal("IPv6 zone identifiers are not allowed") }
            guard IPAddress(text(host)) != nil else { throw CallbackURLRefusal("invalid IPv6 address") }
        } else if let colon = authority.firstIndex(of: ascii(":")) {
            host = authority[..<colon]
            portText = authority[(colon + 1)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw CallbackURLRefusal("URL has no host") }

        let defaultPort = scheme == "https" ? 443 : 80
        var port = defaultPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(isDigit), let p = Int(text(portText)), (1...65_535).contains(p)
            else { throw CallbackURLRefusal("invalid port") }
            port = p
        }

        var name = text(host).lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        var address: IPAddress?
        if bracketed {
            address = IPAddress(name)
        } else if let v4 = IPAddress(name) {
            address = v4
        } else {
            // Anything inet_aton would read as a number (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) is
            // refused rather than guessed at: resolvers and URL parsers disagree on these forms.
            var scratch = in_addr()
            if inet_aton(name, &scratch) != 0 || name.utf8.allSatisfy({ isDigit($0) || $0 == ascii(".") }) {
                throw CallbackURLRefusal("host \(name) is a non-standard numeric address; use a dotted-quad address or a name")
            }
            let validLabel = { (label: Substring.UTF8View) -> Bool in
                !label.isEmpty && label.count <= 63 && label.first != ascii("-") && label.last != ascii("-")
                    && label.allSatisfy { isDigit($0) || $0 == ascii("-") || (ascii("a")...ascii("z")).contains($0) }
            }
            let labels = name.split(separator: ".", omittingEmptySubsequences: false)
            guard name.utf8.count <= 253, labels.allSatisfy({ validLabel($0.utf8) }) else {
                throw CallbackURLRefusal("host \(name) is not a valid host name")
            }
        }
        let hostPart = bracketed ? "[\(name)]" : name
        let target = CallbackTarget(
            url: url, requestURL: "\(scheme)://\(hostPart):\(port)\(pathAndQuery)", scheme: scheme, host: name, port: port,
            address: address)
        // curl must read the same host and port from both spellings, or the check was made on another target.
        for spelling in [url, target.requestURL] {
            guard let parsed = CurlURL(spelling), parsed.names(name), parsed.port == port, parsed.scheme == scheme else {
                throw CallbackURLRefusal("URL is ambiguous: libcurl reads another host or port from it")
            }
        }
        return target
    }

    private static func ascii(_ c: Unicode.Scalar) -> UInt8 { UInt8(ascii: c) }
    private static func isDigit(_ b: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
    private static func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
}
