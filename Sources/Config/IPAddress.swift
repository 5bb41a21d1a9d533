#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address as bytes (4 or 16), with the range checks the callback policy needs.
public struct IPAddress: Sendable, Equatable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Strict textual forms only: dotted-quad IPv4 with four decimal parts and no leading zeros, or
    /// IPv6 as inet_pton reads it. Shorthand like `127.1` or `0x7f000001` is not an address here.
    public init?(_ text: String) {
        if text.utf8.contains(UInt8(ascii: ":")) {
            var a = in6_addr()
            guard inet_pton(AF_INET6, text, &a) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &a) { Array($0) }
            return
        }
        // Byte by byte: Character properties (isNumber, isASCII) made this the costliest step of an /async
        // request's URL check (callgrind).
        var out: [UInt8] = []
        out.reserveCapacity(4)
        var value = 0
        var digits = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "."):
                guard digits > 0, out.count < 3 else { return nil }
                out.append(UInt8(value))
                (value, digits) = (0, 0)
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard !(digits == 1 && value == 0) else { return nil }  // no leading zeros: 01 is octal to some
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            default:
                return nil
            }
        }
        guard digits > 0, out.count == 3 else { return nil }
        out.append(UInt8(value))
        bytes = out
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = bytes
        _ = copy.withUnsafeMutableBytes { raw in
            inet_ntop(isIPv4 ? AF_INET : AF_INET6, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether the first `prefix` bits equal those of `network`.
    public func isIn(_ network: CIDR) -> Bool {
        guard network.address.bytes.count == bytes.count else { return false }
        var bits = network.prefix
        for i in 0..<bytes.count where bits > 0 {
            let take = min(8, bits)
            let mask: UInt8 = take == 8 ? 0xff : ~(0xff >> UInt8(take))
            if bytes[i] & mask != network.address.bytes[i] & mask { return false }
            bits -= take
        }
        return true
    }
}

/// An address range like `10.0.0.0/8` or `fc00::/7`.
public struct CIDR: Sendable, Equatable, CustomStringConvertible {
    public var address: IPAddress
    public var prefix: Int

    public init?(_ text: String) {
        guard let cidr = try? CIDR(parsing: text) else { return nil }
        self = cidr
    }

    /// The network form only, as a typo guard: a prefix of plain decimal digits (no sign, no leading zero) and
    /// no host bits set (`10.0.0.5/8` is refused, naming `10.0.0.0/8`). An IPv4-mapped range
    /// (`::ffff:10.0.0.0/104`) is the IPv4 range it maps (`10.0.0.0/8`): peers are matched as IPv4 addresses.
    public init(parsing text: String) throws(CIDRError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard var address = IPAddress(String(parts[0])) else {
            throw CIDRError(message: "'\(text)' is not an address or a CIDR like 10.1.0.0/16")
        }
        var maxPrefix = address.bytes.count * 8
        var prefix = maxPrefix
        if parts.count == 2 {
            let digits = parts[1].utf8
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ (48...57).contains($0) }), digits.count == 1 || digits.first != 48,
                let value = Int(parts[1]), value <= maxPrefix
            else {
                throw CIDRError(message: "'\(text)': the prefix must be a number from 0 to \(maxPrefix), without a sign or leading zeros")
            }
            prefix = value
        }
        if let ipv4 = address.unmappedIPv4, prefix >= 96 {
            (address, prefix, maxPrefix) = (ipv4, prefix - 96, 32)
        }
        let network = address.masked(to: prefix)
        guard network == address else {
            throw CIDRError(
                message: "'\(text)' has host bits set: the network is \(network)/\(prefix) (one address is \(address)/\(maxPrefix))")
        }
        self.address = address
        self.prefix = prefix
    }

    public var description: String { "\(address)/\(prefix)" }
}

public struct CIDRError: Error, Sendable, Equatable {
    public var message: String
}

extension IPAddress {
    /// The address with every bit past the first `prefix` cleared.
    public func masked(to prefix: Int) -> IPAddress {
        var bytes = self.bytes
        for i in 0..<bytes.count {
            let keep = min(8, max(0, prefix - i * 8))
            bytes[i] &= keep == 8 ? 0xff : ~(0xff >> UInt8(keep))
        }
        return IPAddress(bytes: bytes)!
    }
}

extension CIDR {
    /// Ranges from a setting's list; a malformed one is refused naming the variable.
    public static func list(_ texts: [String], variable: String) throws(ConfigError) -> [CIDR] {
        var cidrs: [CIDR] = []
        for text in texts {
            do throws(CIDRError) {
                cidrs.append(try CIDR(parsing: text))
            } catch {
                throw ConfigError(variable: variable, message: error.message)
            }
        }
        return cidrs
    }
}
