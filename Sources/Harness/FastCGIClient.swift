import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Speaks FastCGI straight to a responder's unix socket, as nginx would but with any params: lets tests
/// play a local user who skips nginx, or a peer that sends params nginx never would.
public enum FastCGIClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// errno of a failed connect, e.g. EACCES when the socket's permissions refuse the caller.
        public var errno: Int32?
    }

    /// One request; returns the status and the body of the CGI response.
    public static func request(
        socket path: String, params: [(String, String)], body: [UInt8] = [], timeoutSeconds: Int = 10
    ) throws -> (status: Int, body: String) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let code = Glibc.errno
            throw Failure(description: "connect \(path): \(String(cString: strerror(code)))", errno: code)
        }
        return try exchange(fd, params: params, body: body)
    }

    /// One request over TCP to an IPv4 `host:port`, from `sourceAddress` when given (the socket is bound to it
    /// before connecting, to play a peer from another address).
    public static func request(
        host: String, port: Int, sourceAddress: String? = nil, params: [(String, String)], body: [UInt8] = [], timeoutSeconds: Int = 10
    ) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func ipv4(_ text: String, _ port: Int) -> sockaddr_in {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr(text)
            address.sin_port = UInt16(port).bigEndian
            return address
        }
        if let sourceAddress {
            var source = ipv4(sourceAddress, 0)
            let bound = withUnsafePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw Failure(description: "bind \(sourceAddress): \(String(cString: strerror(Glibc.errno)))") }
        }
        var address = ipv4(host, port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = Glibc.errno
            throw Failure(description: "connect \(host):\(port): \(String(cString: strerror(code)))", errno: code)
        }
        return try exchange(fd, params: params, body: body)
    }

    private static func exchange(_ fd: Int32, params: [(String, String)], body: [UInt8]) throws -> (status: Int, body: String) {
        var out: [UInt8] = []
        out += record(type: 1, [0, 1, 0, 0, 0, 0, 0, 0])  // BEGIN_REQUEST, role RESPONDER, close after
        var encoded: [UInt8] = []
        for (name, value) in params { encoded += length(name.utf8.count) + length(value.utf8.count) + Array(name.utf8) + Array(value.utf8) }
        for chunk in chunks(encoded) { out += record(type: 4, chunk) }
        out += record(type: 4, [])
        for chunk in chunks(body) { out += record(type: 5, chunk) }
        out += record(type: 5, [])
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send failed: \(String(cString: strerror(Glibc.errno)))") }
            sent += n
        }

        let input = receiveUntilClosed(fd)
        var stdout: [UInt8] = []
        var i = 0
        while i + 8 <= input.count {
            let type = input[i + 1]
            let contentLength = Int(input[i + 4]) << 8 | Int(input[i + 5])
            let padding = Int(input[i + 6])
            guard i + 8 + contentLength <= input.count else { break }
            if type == 6 { stdout += input[(i + 8)..<(i + 8 + contentLength)] }
            i += 8 + contentLength + padding
        }
        guard !stdout.isEmpty else { throw Failure(description: "no response (connection closed)") }
        let text = String(decoding: stdout, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let statusLine = parts[0].split(separator: "\r\n").first { $0.hasPrefix("Status: ") }
        let status = statusLine.flatMap { Int($0.dropFirst(8).prefix(3)) } ?? 200
        return (status, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    private static func record(type: UInt8, _ content: [UInt8]) -> [UInt8] {
        [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xff), 0, 0] + content
    }

    private static func length(_ n: Int) -> [UInt8] {
        n < 128 ? [UInt8(n)] : [UInt8(0x80 | (n >> 24) & 0x7f), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
    }

    private static func chunks(_ bytes: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: 65_535).map { Array(bytes[$0..<min($0 + 65_535, bytes.count)]) }
    }
}

/// Everything the peer sends on `fd` until it closes the connection (or an error ends it).
public func receiveUntilClosed(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { return out }
        out += buffer[0..<n]
    }
}
