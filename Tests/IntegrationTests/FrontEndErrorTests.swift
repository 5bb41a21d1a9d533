import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Errors nginx produces itself (malformed requests, huge headers or URIs, a workfcgi that is down) answer
/// in the same JSON error shape as the API, never with nginx's HTML pages.
@Suite(.serialized, .timeLimit(.minutes(2))) struct FrontEndErrorTests {
    /// Sends raw bytes over TCP and returns everything nginx answers until it closes.
    static func raw(_ port: Int, _ request: String) throws -> (status: Int, headers: String, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Stack.Failure(description: "connect failed") }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let text = String(decoding: receiveUntilClosed(fd), as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let status = Int(parts[0].split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, parts[0], parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    static func errorCode(_ body: String) -> String? {
        let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (json?["error"] as? [String: Any])?["code"] as? String
    }

    @Test func nginxErrorsAreJSON() throws {
        let stack = try Stack()
        try stack.start()
        let cases: [(request: String, status: Int, code: String)] = [
            ("GET /requests/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "bad_request"),
            ("GET /requests/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "bad_request"),
            ("GARBAGE\r\n\r\n", 400, "bad_request"),
            ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\nConnection: close\r\n\r\n", 400, "header_too_large"),
            ("GET /\(String(repeating: "a", count: 20_000)) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414, "uri_too_long"),
            ("POST /async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n", 413, "body_too_large"),
        ]
        for c in cases {
            let answer = try Self.raw(stack.port, c.request)
            let label = String(c.request.prefix(40))
            #expect(answer.status == c.status, "\(label): \(answer.headers)")
            #expect(answer.headers.lowercased().contains("content-type: application/json"), "\(label): \(answer.headers)")
            #expect(Self.errorCode(answer.body) == c.code, "\(label): \(answer.body)")
        }
        // workfcgi down: nginx's 502 becomes the JSON 503 with Retry-After.
        stack.stop(.workfcgi)
        let down = try Self.raw(stack.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(down.status == 503)
        #expect(down.headers.lowercased().contains("retry-after: 1"))
        #expect(Self.errorCode(down.body) == "unavailable", "\(down.body)")
    }
}
