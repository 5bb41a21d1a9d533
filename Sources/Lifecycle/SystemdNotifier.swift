import Foundation

/// sd_notify without libsystemd: each state is one datagram to the unix socket systemd names in
/// `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without that variable (not started by
/// systemd with Type=notify) every call is a no-op.
public struct SystemdNotifier: Sendable {
    /// The socket's address bytes (sun_path), nil when not under systemd.
    let address: [UInt8]?
    /// How often to send WATCHDOG=1: half of `WatchdogSec=`, when the watchdog is on for this process.
    public let watchdogInterval: Double?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()) {
        if let path = environment["NOTIFY_SOCKET"], path.count > 1, path.utf8.count < 108 {
            var bytes = Array(path.utf8)
            if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
            address = bytes
        } else {
            address = nil
        }
        // WATCHDOG_PID, when set, names the process meant (a child must not answer for its parent).
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == pid } ?? true
        if forUs, let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0, address != nil {
            watchdogInterval = usec / 2e6
        } else {
            watchdogInterval = nil
        }
    }

    public var enabled: Bool { address != nil }

    /// Sends `state`, newline-separated assignments such as "READY=1\nSTATUS=listening". Best effort: a
    /// systemd that is not listening must not stop the daemon.
    public func send(_ state: String) {
        guard let address else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, byte) in address.enumerated() { raw[i] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let bytes = Array(state.utf8)
        _ = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }
}
