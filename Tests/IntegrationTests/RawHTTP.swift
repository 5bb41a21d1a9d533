import Foundation
import Harness

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

        func header(_ name: String) -> String? {
            for line in head.split(separator: "\r\n").dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].lowercased() == name { return parts[1].trimmingCharacters(in: .whitespaces) }
            }
            return nil
        }
        var contentType: String { header("content-type") ?? "" }
        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
        var errorCode: String? { contentType.hasPrefix("application/json") ? Self.errorCode(body) : nil }

        static func errorCode(_ body: String) -> String? {
            let json = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
            guard let error = json?["error"] as? [String: Any], error["message"] is String else { return nil }
            return error["code"] as? String
        }
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
        let text = String(decoding: receiveUntilClosed(fd), as: UTF8.self)
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

    /// One exchange written in parts with a pause between them (a body in chunks that arrive apart), then
    /// everything read until the server closes; a chunked answer is de-chunked.
    static func exchange(port: Int, _ parts: [String], pauseMicroseconds: useconds_t = 300_000) throws -> Answer {
        let fd = connect(port: port)
        guard fd >= 0 else { throw Stack.Failure(description: "connect to \(port) failed") }
        defer { close(fd) }
        for (index, part) in parts.enumerated() {
            if index > 0 { usleep(pauseMicroseconds) }
            // A server that refused early may close before the rest is sent: its answer is still read below.
            write(fd, part)
        }
        guard var answer = readAnswer(fd) else { return Answer(status: 0, head: "", body: "") }
        if answer.header("transfer-encoding")?.lowercased() == "chunked" { answer.body = dechunk(answer.body) }
        return answer
    }

    /// The payload of a chunked body (sizes in hex, each chunk followed by CRLF, ended by a 0 chunk).
    static func dechunk(_ text: String) -> String {
        var bytes = Array(text.utf8)[...]
        var out: [UInt8] = []
        while let lineEnd = bytes.firstRange(of: Array("\r\n".utf8)) {
            let sizeText = String(decoding: bytes[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd.upperBound
            guard bytes.endIndex - start >= size else { break }
            out += bytes[start..<start + size]
            bytes = bytes[(start + size)...].dropFirst(2)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
