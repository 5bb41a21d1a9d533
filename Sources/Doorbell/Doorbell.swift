import LocalFiles

#if canImport(Glibc)
import Glibc
#endif

/// A wake-up signal from workfcgi to deliveryd over a unix datagram socket. Ringing never blocks and
/// never fails the caller: a lost ring only delays a job until deliveryd's next poll.
public final class Doorbell: Sendable {
    private let path: String
    private let fd: Int32

    public init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Sends one byte to the listener, if there is one.
    public func ring() {
        guard fd >= 0 else { return }
        _ = withUnixAddress(path) { address, length in
            var byte: UInt8 = 1
            return sendto(fd, &byte, 1, Int32(MSG_DONTWAIT), address, length)
        }
    }
}

/// deliveryd's side: a bound datagram socket it can wait on with a timeout.
public final class DoorbellListener: @unchecked Sendable {
    private let fd: Int32
    private let path: String

    public struct BindError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BindError(description: "socket: \(String(cString: strerror(errno)))") }
        do {
            // A socket file left by a killed daemon would make bind fail: removed, but only when it is this
            // user's socket; anything else there is refused.
            try LocalFile.removeStaleSocket(path)
            let rc = withUnixAddress(path) { address, length in bind(fd, address, length) }
            guard rc == 0 else { throw BindError(description: "bind \(path): \(String(cString: strerror(errno)))") }
            // Only workfcgi rings, and it runs as this same user: nobody else may wake (or flood) the daemon.
            try LocalFile.openSocket(path, group: nil, mode: 0o600)
        } catch let error as BindError {
            close(fd)
            throw error
        } catch {
            close(fd)
            throw BindError(description: "\(error)")
        }
        // Only now: a throw after every property is set would run deinit, which removes the file at `path`.
        self.path = path
        self.fd = fd
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Removes the socket file on a clean exit (the process exits without running deinit), so nothing
    /// rings a daemon that is gone.
    public func removeSocketFile() {
        unlink(path)
    }

    /// Waits until rung or `timeout` seconds pass; returns whether it was rung. Drains queued rings, so a
    /// burst of 1,000 enqueues wakes the daemon once, not 1,000 times.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, Int32(max(0, timeout * 1000)))
        guard ready > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) > 0 {}
        return true
    }
}

/// Calls `body` with a `sockaddr_un` for `path` (truncated paths are refused by returning -1).
func withUnixAddress<T: BinaryInteger>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { return -1 }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
