import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP request written to a socket byte for byte, from a chosen loopback source address: for the
/// spellings, half-sent requests and chunked bodies that a URL-normalising client such as curl will not send.
enum RawHTTP {
    struct Answer {
        var status: Int
        var head: String
        var body: String
    }

    /// A TCP connection from `source` to 127.0.0.1:`port`, or -1.
    static func connect(port: Int, from source: String = "127.0.0.1") -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &local.sin_addr)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        let ok = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        } && withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !ok {
            close(fd)
            return -1
        }
        return fd
    }

    static func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads until the server closes the connection (requests are sent with `Connection: close`).
    static func readAnswer(_ fd: Int32) -> Answer? {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return Answer(status: status, head: String(text[..<end.lowerBound]), body: String(text[end.upperBound...]))
    }

    /// `method target` with the given headers (Host: 127.0.0.1:port unless given) and body, as written.
    static func send(
        _ method: String, _ target: String, port: Int, from source: String = "127.0.0.1", headers: [String: String] = [:], body: String = ""
    ) -> Answer? {
        let fd = connect(port: port, from: source)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var head = "\(method) \(target) HTTP/1.1\r\n"
        var all = ["Host": "127.0.0.1:\(port)", "Connection": "close"].merging(headers) { $1 }
        if !body.isEmpty && all["Transfer-Encoding"] == nil { all["Content-Length"] = "\(body.utf8.count)" }
        for (name, value) in all.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        write(fd, head + "\r\n" + body)
        return readAnswer(fd)
    }
}
