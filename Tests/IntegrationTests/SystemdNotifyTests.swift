import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The sd_notify protocol as systemd speaks it with Type=notify and WatchdogSec=: a datagram socket named by
/// NOTIFY_SOCKET, here one the test binds itself.
@Suite(.serialized) struct SystemdNotifyTests {
    /// Collects the datagrams sent to a unix socket at `path`.
    final class NotifySocket: @unchecked Sendable {
        let fd: Int32
        init(path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw Stack.Failure(description: "bind \(path) failed") }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        deinit { close(fd) }

        /// Messages received until one satisfies `until` or `seconds` pass.
        func receive(seconds: Double, until: (String) -> Bool) -> [String] {
            var out: [String] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let n = recv(fd, &buffer, buffer.count, 0)
                guard n > 0 else { continue }
                let message = String(decoding: buffer[0..<n], as: UTF8.self)
                out.append(message)
                if until(message) { break }
            }
            return out
        }
    }

    @Test(arguments: [Stack.Service.workfcgi, .deliveryd])
    func readyThenWatchdogThenStopping(service: Stack.Service) throws {
        let folder = NSTemporaryDirectory() + "notify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let notify = try NotifySocket(path: folder + "/notify.sock")
        // WatchdogSec=1s: keep-alives every half second.
        let stack = try Stack(settings: ["NOTIFY_SOCKET": folder + "/notify.sock", "WATCHDOG_USEC": "1000000"])
        defer { stack.stopAll() }
        try stack.launch(service)

        let started = notify.receive(seconds: 20) { $0.contains("WATCHDOG=1") }
        let ready = try #require(started.firstIndex { $0.contains("READY=1") }, "\(started)\n\(stack.log(service))")
        let watchdog = try #require(started.firstIndex { $0.contains("WATCHDOG=1") }, "\(started)")
        #expect(ready < watchdog, "ready before any keep-alive")
        #expect(started[ready].contains("STATUS=") && started[ready].contains("MAINPID="))
        if service == .workfcgi {
            // READY=1 only once the sockets listen.
            #expect(FileManager.default.fileExists(atPath: stack.runDirectory + "/api.sock"))
        }
        let more = notify.receive(seconds: 3) { _ in false }.filter { $0.contains("WATCHDOG=1") }
        #expect(more.count >= 3, "a keep-alive about every 0.5 s: \(more.count) in 3 s")

        #expect(stack.stop(service) == 0)
        let stopping = notify.receive(seconds: 2) { $0.contains("STOPPING=1") }
        #expect(stopping.contains { $0.contains("STOPPING=1") }, "\(stopping)")
    }
}
