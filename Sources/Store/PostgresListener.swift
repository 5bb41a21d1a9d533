import CSystem
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// deliveryd's wake-up on PostgreSQL: `LISTEN` on a connection of its own, so a job committed by any node (an
/// /async batch, a redeliver) wakes every deliveryd node, not only one on the committing node's host as the
/// doorbell does. A thread of its own owns the connection: it polls the socket, and calls `wake` for each
/// read that brought notifications. When the connection is lost it reconnects and listens again by itself,
/// with `ListenBackoff`'s delays, and calls `wake` once listening again (what was committed meanwhile was
/// notified to nobody). The claim loop never waits on any of this: its fallback poll goes on meanwhile.
public final class PostgresListener: Sendable {
    /// What happened to the connection, for the daemon's log.
    public enum Event: Sendable, Equatable {
        /// Listening on `channel`; the connection's server process is `backendPID`.
        case listening(channel: String, backendPID: Int32)
        /// The connection was lost (the server restarted, failed over, or ended it).
        case lost(String)
        /// A connect or LISTEN failed; the next try is in `retryInSeconds`.
        case failed(String, retryInSeconds: Double)
    }

    /// Its name in pg_stat_activity, so an operator can tell it from the pool's connections.
    public static let applicationName = "workfcgi-listen"

    private let url: String
    private let wake: @Sendable () -> Void
    private let event: @Sendable (Event) -> Void
    /// Written to by `stop()`: the thread polls it beside the connection's socket, and while it waits to retry.
    private let stopPipe: (read: Int32, write: Int32)
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts listening on `url` (the store's WORKFCGI_DATABASE_URL) at once, on its own thread; never throws:
    /// a database down at start is one more reconnect.
    public init(url: String, wake: @escaping @Sendable () -> Void, event: @escaping @Sendable (Event) -> Void = { _ in }) {
        (self.url, self.wake, self.event) = (url, wake, event)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            // Not inherited by the handler programs deliveryd spawns.
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        } else {
            fds = [-1, -1]
        }
        stopPipe = (fds[0], fds[1])
        Thread { [self] in
            workfcgi_name_thread("pg-listen")
            run()
            finished.signal()
        }.start()
    }

    deinit {
        close(stopPipe.read)
        close(stopPipe.write)
    }

    /// Ends the thread and closes its connection; returns once it has.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        var byte: UInt8 = 1
        // Without its pipe (pipe2 failed) the thread cannot be woken; it ends with the process.
        if write(stopPipe.write, &byte, 1) == 1 { finished.wait() }
    }

    private func run() {
        var backoff = ListenBackoff()
        while !stopped.load(ordering: .relaxed) {
            let connection: PostgresConnection
            let channel: String
            do {
                // A listening connection only reads: PostgresConnection's keepalives find a database host that
                // vanished (power, network) within ~25 s, where it would otherwise wait for hours.
                connection = try PostgresConnection(url: url, parameters: [("application_name", Self.applicationName)])
                channel = try PostgresNotify.channel(connection)
                try connection.execute("LISTEN \(PostgresNotify.quoted(channel))")
            } catch {
                let delay = backoff.failed()
                event(.failed("\(error)", retryInSeconds: delay))
                pause(seconds: delay)
                continue
            }
            let since = DispatchTime.now()
            event(.listening(channel: channel, backendPID: connection.backendPID))
            // Whatever was committed while nobody listened: the claim loop looks once.
            wake()
            if let lost = listen(connection) {
                event(.lost(lost))
                pause(seconds: backoff.lost(afterSeconds: Double(DispatchTime.now().uptimeNanoseconds - since.uptimeNanoseconds) / 1e9))
            }
        }
    }

    /// Waits for notifications until the connection is lost (returns why) or `stop()` (returns nil).
    private func listen(_ connection: PostgresConnection) -> String? {
        while !stopped.load(ordering: .relaxed) {
            var fds = [pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0), pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
            // No timeout: the socket turns readable for a notification and for a lost connection alike.
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return "poll: \(String(cString: strerror(errno)))"
            }
            if fds[1].revents != 0 { return nil }
            guard fds[0].revents != 0 else { continue }
            do {
                if try connection.takeNotifications() > 0 { wake() }
            } catch {
                return "\(error)"
            }
        }
        return nil
    }

    /// Sleeps `seconds`, or less when stopped meanwhile.
    private func pause(seconds: Double) {
        var fd = pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(min(Double(Int32.max), max(0, seconds * 1000))))
    }
}

/// How long the listener waits before it connects again: 0.1 s after a loss, doubling on every failure up to
/// 10 s, so a database that is down is tried a few times a minute, never in a loop; back to 0.1 s once a
/// connection has held 10 s (a server that accepts and at once drops connections keeps the delay growing).
public struct ListenBackoff: Sendable, Equatable {
    public static let first = 0.1
    public static let most = 10.0
    /// A connection that held this long counts as a success: the next loss starts from `first` again.
    public static let healthy = 10.0

    public private(set) var next = ListenBackoff.first

    public init() {}

    /// A connect failed: the delay before the next, and the one after that doubled.
    public mutating func failed() -> Double {
        defer { next = min(Self.most, next * 2) }
        return next
    }

    /// A connection that had been listening for `seconds` was lost: the delay before connecting again.
    public mutating func lost(afterSeconds seconds: Double) -> Double {
        if seconds >= Self.healthy { next = Self.first }
        return failed()
    }
}

/// The channel a database's jobs are notified on: `workfcgi_jobs` in the `public` schema, else per schema
/// (`workfcgi_jobs:<schema>`): NOTIFY reaches the whole database, and two deployments in two schemas of one
/// database (search_path in the URL) should not wake each other's deliveryd.
enum PostgresNotify {
    static func channel(_ db: PostgresConnection) throws -> String {
        channel(schema: try db.query("SELECT current_schema()").first?.text(0))
    }

    static func channel(schema: String?) -> String {
        guard let schema, schema != "public" else { return "workfcgi_jobs" }
        // Channel names are identifiers: 63 bytes at most.
        var name = "workfcgi_jobs:" + schema
        while name.utf8.count > 63 { name.removeLast() }
        return name
    }

    /// `name` as a quoted identifier, for LISTEN (which takes no parameter).
    static func quoted(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
