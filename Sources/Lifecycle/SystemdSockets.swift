import Config
import Foundation

/// Socket activation: the listening sockets systemd passes (`LISTEN_FDS` descriptors from 3, for this
/// process when `LISTEN_PID` is its pid), keyed by the path each is bound to (a TCP socket by its address,
/// written as `ListenAddress` writes it: `127.0.0.11:9000`, `[::1]:9000`), so the unit's order of
/// ListenStream= lines does not matter. Taken once; the variables are removed so children inherit nothing.
public enum SystemdSockets {
    public static func take(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: Int32] {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap(Int32.init), count > 0, count < 64
        else { return [:] }
        var sockets: [String: Int32] = [:]
        for fd in 3..<(3 + count) {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let rc = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            guard rc == 0 else { continue }
            switch Int32(storage.ss_family) {
            case AF_UNIX:
                let address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_un.self) }
                let path = withUnsafeBytes(of: address.sun_path) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if !path.isEmpty { sockets[path] = fd }
            case AF_INET:
                let a = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
                if let host = withUnsafeBytes(of: a.sin_addr, { IPAddress(bytes: Array($0)) }) {
                    sockets[ListenAddress.tcp(host: host, port: UInt16(bigEndian: a.sin_port)).description] = fd
                }
            case AF_INET6:
                let a = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }
                if let host = withUnsafeBytes(of: a.sin6_addr, { IPAddress(bytes: Array($0)) }) {
                    sockets[ListenAddress.tcp(host: host, port: UInt16(bigEndian: a.sin6_port)).description] = fd
                }
            default:
                continue
            }
        }
        return sockets
    }
}
