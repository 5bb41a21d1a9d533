import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Receivers are outside the boundary too: what they send back must not hold deliveryd's workers.
@Suite(.serialized, .timeLimit(.minutes(2))) struct HostileReceiverTests {
    /// Answers every connection with `200 OK` and then a chunked body that never ends (for up to 20 s).
    final class EndlessBody: @unchecked Sendable {
        let fd: Int32
        let port: Int

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard ok else { throw Stack.Failure(description: "cannot listen") }
            port = Int(UInt16(bigEndian: address.sin_port))
            Thread.detachNewThread { [self] in serve() }
        }

        func serve() {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                Thread.detachNewThread {
                    defer { close(client) }
                    var buffer = [UInt8](repeating: 0, count: 65_536)
                    _ = recv(client, &buffer, buffer.count, 0)
                    let head = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                    guard send(client, head, head.count, Int32(MSG_NOSIGNAL)) > 0 else { return }
                    let chunk = Array("4000\r\n\(String(repeating: "x", count: 0x4000))\r\n".utf8)
                    let deadline = Date().addingTimeInterval(20)
                    while Date() < deadline, send(client, chunk, chunk.count, Int32(MSG_NOSIGNAL)) > 0 { usleep(1_000) }
                }
            }
        }

        deinit {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    @Test func anEndlessBodyIsJudgedByItsStatus() throws {
        let receiver = try EndlessBody()
        let stack = try Stack()  // callback timeout 2 s
        try stack.start()
        let id = try stack.submit(#"{"text": "endless", "callback_url": "http://127.0.0.1:\#(receiver.port)/stream"}"#)
        try stack.waitFor("a recorded attempt", timeout: 10) { ((try? stack.attemptStatuses(id)) ?? []).count >= 1 }
        try stack.waitForStatus(id, "completed", timeout: 10)
        #expect(try stack.attemptStatuses(id) == [200], "one attempt, judged by its 200, not a timeout")
        let attempt = try #require((try stack.delivery(id)["attempts"] as? [[String: Any]])?.first)
        #expect((attempt["duration_ms"] as? Double ?? 9_999) < 1_500, "the attempt stopped reading instead of waiting out the 2 s timeout: \(attempt)")
    }

    /// Listens on `host` and never accepts: connections complete in the kernel, requests are never answered.
    static func silentListener(_ host: String) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw Stack.Failure(description: "cannot listen on \(host)") }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test func slowReceiversDoNotDelayOthers() async throws {
        // 20 receivers that never answer, each on its own address (so no per-host bound or breaker applies),
        // against 4 compute workers and a 2 s attempt timeout: a fast receiver must still be served at once.
        let silent = try (10..<30).map { try Self.silentListener("127.0.0.\($0)") }
        defer { for s in silent { close(s.fd) } }
        let (stack, receiver, port) = try await Stack.startedWithReceiver(settings: ["WORKFCGI_WORKERS": "4", "WORKFCGI_RETRY_SCHEDULE": "none"])
        let slow = try silent.enumerated().map { i, s in
            try stack.submit(#"{"text": "slow", "callback_url": "http://127.0.0.\#(10 + i):\#(s.port)/never"}"#)
        }
        // Every slow job computed and its callback under way (or already given up) before the fast one comes.
        try stack.waitFor("the slow callbacks to be under way") {
            slow.allSatisfy { id in ["delivering", "failed"].contains((try? stack.record(id))?["status"] as? String) }
        }
        let submitted = Date()
        let id = try stack.submit(#"{"text": "fast", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        #expect(await receiver.wait(timeout: 15) { $0.contains { $0.webhookID == id } })
        let waited = Date().timeIntervalSince(submitted)
        // Before the dispatcher: 20 attempts x 2 s / 4 workers = ~10 s behind the silent receivers.
        #expect(waited < 2.5, "the fast callback waited \(waited) s behind silent receivers")
        await receiver.stop()
    }
}
