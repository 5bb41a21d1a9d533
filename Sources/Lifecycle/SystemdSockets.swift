import Foundation

/// Socket activation: the listening sockets systemd passes (`LISTEN_FDS` descriptors from 3, for this
/// process when `LISTEN_PID` is its pid), keyed by the path each is bound to, so the unit's order of
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
            var address = sockaddr_un()
            var length = socklen_t(MemoryLayout<sockaddr_un>.size)
            let rc = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            guard rc == 0, address.sun_family == sa_family_t(AF_UNIX) else { continue }
            let path = withUnsafeBytes(of: address.sun_path) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if !path.isEmpty { sockets[path] = fd }
        }
        return sockets
    }
}
