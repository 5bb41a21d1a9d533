/// Where a FastCGI server listens: WORKFCGI_SYNC_SOCKET and WORKFCGI_API_SOCKET. A value with a `/` (or
/// without a `:`) is a unix socket path, as always; `HOST:PORT` is TCP, as PHP-FPM's `listen = 10.0.0.5:9000`,
/// with a numeric host only (`127.0.0.11:9000`, `[::1]:9000`, `0.0.0.0:9000`), so no name lookup decides
/// where a daemon listens.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: IPAddress, port: UInt16)

    /// Throws a message (the caller names the variable).
    public init(parsing text: String) throws(ListenAddressError) {
        if text.contains("/") || !text.contains(":") {
            self = .unix(path: text)
            return
        }
        let hostText: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ListenAddressError(message: "'\(text)' is not HOST:PORT: an IPv6 host is written [::1]:9000")
            }
            hostText = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw ListenAddressError(message: "'\(text)' is not HOST:PORT: an IPv6 host is written in brackets, [::1]:9000")
            }
            (hostText, portText) = (parts[0], parts[1])
        }
        guard let host = IPAddress(String(hostText)), host.isIPv4 == !text.hasPrefix("[") else {
            throw ListenAddressError(
                message: "'\(text)': '\(hostText)' is not a numeric IPv4 or [IPv6] address (names are not looked up; a unix socket path has a /)")
        }
        guard portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber), let port = Int(portText), (1...65_535).contains(port),
            !(portText.count > 1 && portText.hasPrefix("0"))
        else {
            throw ListenAddressError(message: "'\(text)': the port must be a number from 1 to 65535, got '\(portText)'")
        }
        self = .tcp(host: host, port: UInt16(port))
    }

    public var isTCP: Bool { if case .tcp = self { true } else { false } }

    /// Whether two listeners would be one socket: the same path (`run/api.sock`, `./run//api.sock`), or the
    /// same port on an address both take (equal hosts, or a wildcard covering the other: 0.0.0.0 every IPv4
    /// address, [::] every address, IPv4 included, as it listens dual-stack).
    public func overlaps(_ other: ListenAddress) -> Bool {
        switch (self, other) {
        case (.unix(let a), .unix(let b)):
            return Self.lexical(a) == Self.lexical(b)
        case (.tcp(let hostA, let portA), .tcp(let hostB, let portB)):
            guard portA == portB else { return false }
            let (a, b) = (hostA.unmappedIPv4 ?? hostA, hostB.unmappedIPv4 ?? hostB)
            func covers(_ wildcard: IPAddress, _ other: IPAddress) -> Bool {
                wildcard.bytes.allSatisfy { $0 == 0 } && (!wildcard.isIPv4 || other.isIPv4)
            }
            return a == b || covers(a, b) || covers(b, a)
        default:
            return false
        }
    }

    /// A path without its `.` components and repeated slashes (`..` is left: it depends on links).
    static func lexical(_ path: String) -> String {
        (path.hasPrefix("/") ? "/" : "") + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    public var description: String {
        switch self {
        case .unix(let path): path
        case .tcp(let host, let port): host.isIPv4 ? "\(host):\(port)" : "[\(host)]:\(port)"
        }
    }
}

public struct ListenAddressError: Error, Sendable, Equatable {
    public var message: String
}

/// WORKFCGI_FRONTEND_ADDRESSES: the peers a TCP FastCGI socket admits (PHP-FPM's `listen.allowed_clients`).
/// FastCGI params are believed (REMOTE_ADDR drives the operator rule, bounds and idempotency), so over TCP
/// only the front ends may connect; over a unix socket the peer's uid is checked instead.
public struct FrontendAddresses: Sendable, Equatable {
    public var ranges: [CIDR]

    /// The default: this machine only.
    public static let loopback = ["127.0.0.0/8", "::1/128"]
    public static let loopbackOnly = FrontendAddresses(loopback.compactMap { CIDR($0) })

    public init(_ ranges: [CIDR]) { self.ranges = ranges }

    /// Whether a peer may talk FastCGI. An IPv4-mapped IPv6 peer (`::ffff:10.0.0.5`, on a dual-stack `[::]`
    /// socket) is matched as the IPv4 address it is.
    public func admits(_ peer: IPAddress) -> Bool {
        let address = peer.unmappedIPv4 ?? peer
        return ranges.contains { address.isIn($0) }
    }
}

extension IPAddress {
    /// 127.0.0.0/8 or ::1 (an IPv4-mapped address as the IPv4 address it is): always this machine.
    public var isLoopback: Bool {
        let address = unmappedIPv4 ?? self
        return address.isIPv4 ? address.bytes[0] == 127 : address.bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// The IPv4 address inside `::ffff:a.b.c.d`; nil for any other address.
    public var unmappedIPv4: IPAddress? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff else { return nil }
        return IPAddress(bytes: Array(bytes[12...]))
    }
}
