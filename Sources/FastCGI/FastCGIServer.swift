import CFastCGI
import Config
import CSystem
import Foundation
import LocalFiles
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A FastCGI responder on one listening socket: `threads` threads each loop over `FCGX_Accept_r` and call
/// the handler. Separate servers (sockets) give separate pools, so one kind of traffic cannot occupy the
/// threads of another.
///
/// Shutdown: libfcgi's own SIGTERM handler only sets a flag, and threads stay blocked in accept or in a
/// read on a kept-alive nginx connection. `stop()` therefore shuts the listening socket down (waking
/// accept) and shuts down the connections of idle threads (waking their read); busy threads finish their
/// request, answer it, and then leave. A socket inherited from systemd (socket activation) must keep
/// listening for the next workfcgi: its descriptor is replaced here by an unconnected socket, and the
/// threads blocked in accept on it are woken by a signal; their retry then fails, while connections keep
/// queueing in systemd's socket until the next workfcgi accepts them.
public final class FastCGIServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    /// Who may talk FastCGI to this server. FastCGI params are believed (REMOTE_ADDR is the client's address
    /// for the operator rule, idempotency keys and bounds), so only the front end may be a peer: the socket
    /// file is 0660 with the front end's group, and every connection's peer uid (SO_PEERCRED) is checked as well.
    /// Over TCP the peer's address is checked instead (`addresses`), before any FastCGI record is read.
    public struct Access: Sendable {
        /// The socket file's group (the front end's); nil keeps this process's group.
        public var group: gid_t?
        /// Peer uids admitted; nil admits whoever can open the socket file.
        public var peers: Set<uid_t>?
        /// Peer addresses a TCP socket admits (WORKFCGI_FRONTEND_ADDRESSES).
        public var addresses: FrontendAddresses
        /// Told of a refused peer (its uid and pid), at most once every 10 s, with how many refusals since.
        public var onRefused: @Sendable (_ uid: uid_t, _ pid: pid_t, _ count: Int) -> Void
        /// Told of a refused TCP peer (its address), at most once every 10 s, with how many refusals since.
        public var onRefusedAddress: @Sendable (_ address: String, _ count: Int) -> Void
        /// Told of every refusal, for the metrics.
        public var counted: @Sendable (PeerRefusal) -> Void
        public init(
            group: gid_t?, peers: Set<uid_t>?, addresses: FrontendAddresses = .loopbackOnly,
            onRefused: @escaping @Sendable (uid_t, pid_t, Int) -> Void = { _, _, _ in },
            onRefusedAddress: @escaping @Sendable (String, Int) -> Void = { _, _ in },
            counted: @escaping @Sendable (PeerRefusal) -> Void = { _ in }
        ) {
            self.group = group
            self.peers = peers
            self.addresses = addresses
            self.onRefused = onRefused
            self.onRefusedAddress = onRefusedAddress
            self.counted = counted
        }
    }

    /// Why a peer was refused: the `reason` label of workfcgi_fastcgi_refused_peers_total.
    public enum PeerRefusal: String, Sendable, CaseIterable {
        /// A unix socket peer whose uid is not a front-end user's (answered 403).
        case user
        /// A TCP peer outside WORKFCGI_FRONTEND_ADDRESSES (closed unread).
        case address
    }

    /// One pool thread's FastCGI request and whether it is waiting for the next request.
    private final class Slot: @unchecked Sendable {
        var request = FCGX_Request()
        let idle = Mutex(false)
        /// The pool thread serving this slot (pthread_t), once it runs.
        let thread = Atomic<UInt>(0)
    }

    /// Wakes pool threads out of accept on an inherited socket (see `stop`).
    static let wakeSignal = SIGUSR1

    private let socketPath: String
    private let listenFD: Int32
    /// TCP: the pool threads accept themselves and check the peer's address before libfcgi reads a byte.
    private let tcp: Bool
    /// Passed in by systemd: it stays, bound and listening, after this process.
    private let inherited: Bool
    private let maxBodyBytes: Int
    private let handler: Handler
    private let access: Access
    private let name: String
    private let onThreadStart: (@Sendable () -> Void)?
    private let slots: [Slot]
    private let stopping = Atomic<Bool>(false)
    /// Threads between accepting a request and finishing its answer.
    private let busy = Atomic<Int>(0)
    private let finished = DispatchGroup()
    /// When a refused peer was last reported (uptime ns), and the refusals since.
    private let refusals = Mutex<(reportedAt: UInt64, count: Int)>((0, 0))

    /// Must run once per process before any server is created.
    public static func initialize() {
        FCGX_Init()
        _ = workfcgi_install_wake_signal(wakeSignal)
    }

    /// Opens the unix socket at `socketPath` (replacing a stale one) with the given accept backlog.
    public convenience init(
        socketPath: String, name: String, threads: Int, onThreadStart: (@Sendable () -> Void)? = nil, backlog: Int = 256,
        maxBodyBytes: Int, access: Access, handler: @escaping Handler
    ) throws {
        // Only a socket of this user's that a predecessor left is removed; anything else there is refused.
        try LocalFile.removeStaleSocket(socketPath)
        let fd = FCGX_OpenSocket(socketPath, Int32(backlog))
        guard fd >= 0 else { throw Error(description: "cannot listen on \(socketPath): \(String(cString: strerror(errno)))") }
        // Created under umask 077; opened to nginx's group only, never through a symlink.
        do {
            try LocalFile.openSocket(socketPath, group: access.group, mode: 0o660)
        } catch {
            close(fd)
            throw error
        }
        self.init(
            listenFD: fd, inherited: false, tcp: false, socketPath: socketPath, name: name, threads: threads, onThreadStart: onThreadStart,
            maxBodyBytes: maxBodyBytes, access: access, handler: handler)
    }

    /// Listens on TCP (`host:port`), as PHP-FPM's `listen = 10.0.0.5:9000`: only peers in `access.addresses` are
    /// served. libfcgi's own listener is IPv4 only, so the socket is made here.
    public convenience init(
        host: IPAddress, port: UInt16, name: String, threads: Int, onThreadStart: (@Sendable () -> Void)? = nil, backlog: Int = 256,
        maxBodyBytes: Int, access: Access, handler: @escaping Handler
    ) throws {
        let label = ListenAddress.tcp(host: host, port: port).description
        let family = host.isIPv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Error(description: "cannot listen on \(label): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        // A restart must not wait for the old connections' TIME_WAIT to end.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        let length: Int
        if host.isIPv4 {
            length = MemoryLayout<sockaddr_in>.size
            withUnsafeMutableBytes(of: &storage) { raw in
                let a = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                a.pointee.sin_family = sa_family_t(AF_INET)
                a.pointee.sin_port = port.bigEndian
                withUnsafeMutableBytes(of: &a.pointee.sin_addr) { $0.copyBytes(from: host.bytes) }
            }
        } else {
            length = MemoryLayout<sockaddr_in6>.size
            withUnsafeMutableBytes(of: &storage) { raw in
                let a = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                a.pointee.sin6_family = sa_family_t(AF_INET6)
                a.pointee.sin6_port = port.bigEndian
                withUnsafeMutableBytes(of: &a.pointee.sin6_addr) { $0.copyBytes(from: host.bytes) }
            }
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0, listen(fd, Int32(backlog)) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Error(description: "cannot listen on \(label): \(reason)")
        }
        self.init(
            listenFD: fd, inherited: false, tcp: true, socketPath: label, name: name, threads: threads, onThreadStart: onThreadStart,
            maxBodyBytes: maxBodyBytes, access: access, handler: handler)
    }

    /// Serves a listening socket that systemd opened (socket activation): its owner, group and mode are
    /// the socket unit's, and the socket file is left in place on exit.
    public convenience init(
        inheritedFD fd: Int32, socketPath: String, tcp: Bool = false, name: String, threads: Int, onThreadStart: (@Sendable () -> Void)? = nil,
        maxBodyBytes: Int, access: Access, handler: @escaping Handler
    ) {
        self.init(
            listenFD: fd, inherited: true, tcp: tcp, socketPath: socketPath, name: name, threads: threads, onThreadStart: onThreadStart,
            maxBodyBytes: maxBodyBytes, access: access, handler: handler)
    }

    private init(
        listenFD: Int32, inherited: Bool, tcp: Bool, socketPath: String, name: String, threads: Int, onThreadStart: (@Sendable () -> Void)?,
        maxBodyBytes: Int, access: Access, handler: @escaping Handler
    ) {
        self.listenFD = listenFD
        self.inherited = inherited
        self.tcp = tcp
        self.socketPath = socketPath
        self.name = name
        self.onThreadStart = onThreadStart
        self.maxBodyBytes = maxBodyBytes
        self.access = access
        self.handler = handler
        slots = (0..<threads).map { _ in Slot() }
    }

    /// Starts the pool threads.
    public func start() {
        for (i, slot) in slots.enumerated() {
            // TCP: libfcgi gets no listening socket, so that no path of its own (a retry after a malformed
            // request) can accept a connection past the address check.
            FCGX_InitRequest(&slot.request, tcp ? -1 : listenFD, 0)
            finished.enter()
            let thread = Thread { [self] in
                workfcgi_name_thread("\(name)-\(i)")  // for ps, top and /proc
                slot.thread.store(workfcgi_current_thread(), ordering: .sequentiallyConsistent)
                _ = workfcgi_unblock_signal(Self.wakeSignal)
                // E.g. a pool whose requests compute (sync) lowers its threads' priority.
                onThreadStart?()
                serve(slot)
                finished.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Stops accepting; in-flight requests complete. Returns at once; `wait()` blocks until the pool is done.
    public func stop() {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        if inherited {
            // Not shutdown(): that would stop systemd's socket too. Every accept from now on fails at once.
            let blank = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            dup2(blank, listenFD)
            close(blank)
            wakeAcceptingThreads()
        } else {
            shutdown(listenFD, Int32(SHUT_RDWR))
        }
        for slot in slots {
            slot.idle.withLock { idle in
                // An idle thread may be parked on a kept-alive connection from nginx: wake its read.
                if idle && slot.request.ipcFd >= 0 { shutdown(slot.request.ipcFd, Int32(SHUT_RDWR)) }
            }
        }
    }

    /// Blocks until every pool thread has left, then removes the socket file (unless systemd owns it).
    public func wait() {
        // A thread about to enter accept when the first signal came is woken by a later one.
        while finished.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            if inherited && stopping.load(ordering: .sequentiallyConsistent) { wakeAcceptingThreads() }
        }
        close(listenFD)
        if !inherited && !tcp { unlink(socketPath) }
    }

    private func wakeAcceptingThreads() {
        for slot in slots where slot.idle.withLock({ $0 }) {
            let thread = slot.thread.load(ordering: .sequentiallyConsistent)
            if thread != 0 { _ = workfcgi_signal_thread(thread, Self.wakeSignal) }
        }
    }

    private func serve(_ slot: Slot) {
        while true {
            let proceed = slot.idle.withLock { idle -> Bool in
                if stopping.load(ordering: .sequentiallyConsistent) { return false }
                idle = true
                return true
            }
            guard proceed else { break }
            // A connection the front end kept alive (FCGI_KEEP_CONN) was admitted when it was accepted.
            if tcp && slot.request.ipcFd < 0 {
                let accepted = acceptAdmitted()
                slot.idle.withLock { $0 = false }
                guard let fd = accepted else {
                    if stopping.load(ordering: .sequentiallyConsistent) { break }
                    continue
                }
                // libfcgi reads the request from this connection as from one it kept alive.
                slot.request.ipcFd = fd
                slot.request.keepConnection = 1
            }
            let rc = FCGX_Accept_r(&slot.request)
            slot.idle.withLock { $0 = false }
            guard rc >= 0 else {
                if stopping.load(ordering: .sequentiallyConsistent) { break }
                // A connection that failed mid-request: drop it and keep serving.
                FCGX_Free(&slot.request, 1)
                continue
            }
            busy.add(1, ordering: .relaxed)
            defer { busy.subtract(1, ordering: .relaxed) }
            // A peer that never finishes sending its body must not hold this thread for ever.
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(slot.request.ipcFd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let response: HTTPResponse
            // Over TCP the address was checked on accept; SO_PEERCRED means nothing there.
            if !tcp, let peers = access.peers, let peer = Self.peer(slot.request.ipcFd), !peers.contains(peer.uid) {
                access.counted(.user)
                if let count = noteRefusal() { access.onRefused(peer.uid, peer.pid, count) }
                response = HTTPResponse.error(
                    403, code: "forbidden", message: "this FastCGI peer's user is not a front-end user (WORKFCGI_FRONTEND_USERS)")
            } else {
                response = handler(read(&slot.request))
            }
            let bytes = response.wireBytes
            bytes.withUnsafeBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    _ = FCGX_PutStr($0, Int32(buffer.count), slot.request.out)
                }
            }
            FCGX_Finish_r(&slot.request)
        }
        // Close a kept-alive connection that the loop left open.
        FCGX_Free(&slot.request, 1)
    }

    /// What the pool is doing now, for /status, /metrics and /ui (PHP-FPM's status page: active, total,
    /// listen queue).
    public struct Status: Sendable, Equatable {
        public var name: String
        public var threads: Int
        public var busy: Int
        /// Connections the kernel holds for accept (sock_diag), and the listen backlog; nil when it cannot be read.
        public var queued: Int?
        public var queueLimit: Int?
        public init(name: String, threads: Int, busy: Int, queued: Int?, queueLimit: Int?) {
            (self.name, self.threads, self.busy, self.queued, self.queueLimit) = (name, threads, busy, queued, queueLimit)
        }
    }

    /// One netlink round trip for the accept queue; the rest is read from memory.
    public func status() -> Status {
        var queued: UInt32 = 0, limit: UInt32 = 0
        let read = !stopping.load(ordering: .relaxed) && workfcgi_unix_accept_queue(listenFD, &queued, &limit) == 0
        return Status(
            name: name, threads: slots.count, busy: busy.load(ordering: .relaxed), queued: read ? Int(queued) : nil,
            queueLimit: read ? Int(limit) : nil)
    }

    /// The process at the other end of a unix socket connection.
    static func peer(_ fd: Int32) -> (uid: uid_t, pid: pid_t)? {
        var credentials = workfcgi_peer_credentials()
        return workfcgi_peer_credentials(fd, &credentials) == 0 ? (credentials.uid, credentials.pid) : nil
    }

    /// Counts a refusal; returns the refusals to report when the last report is 10 s old (or there was none).
    private func noteRefusal() -> Int? {
        let now = DispatchTime.now().uptimeNanoseconds
        return refusals.withLock { state -> Int? in
            state.count += 1
            guard state.reportedAt == 0 || now &- state.reportedAt >= 10_000_000_000 else { return nil }
            defer { state = (now, 0) }
            return state.count
        }
    }

    /// The next TCP connection from an admitted address; others are closed unread (counted, reported).
    /// nil when accept fails (the socket was shut down, or a connection vanished before it was taken).
    private func acceptAdmitted() -> Int32? {
        while true {
            var storage = sockaddr_storage()
            var length = UInt32(MemoryLayout<sockaddr_storage>.size)
            let fd = workfcgi_accept_cloexec(listenFD, &storage, &length)
            if fd < 0 {
                let code = errno
                if code == EINTR && !stopping.load(ordering: .sequentiallyConsistent) { continue }
                // Out of descriptors or memory: the connection stays queued; wait instead of spinning on it.
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(code) { usleep(10_000) }
                return nil
            }
            if let peer = Self.address(storage), access.addresses.admits(peer) {
                // libfcgi writes the end-of-request record apart from the body: without this, Nagle's algorithm
                // holds it until the front end's delayed ACK (40 ms).
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                // A front end on another machine can vanish without a FIN: its half-open connection must not
                // hold this thread in libfcgi's read of the params for ever.
                var timeout = timeval(tv_sec: 30, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                return fd
            }
            close(fd)
            access.counted(.address)
            if let count = noteRefusal() { access.onRefusedAddress(Self.address(storage)?.description ?? "?", count) }
        }
    }

    /// The IP address in an accepted connection's peer address.
    static func address(_ storage: sockaddr_storage) -> IPAddress? {
        var storage = storage
        return withUnsafeBytes(of: &storage) { raw -> IPAddress? in
            switch Int32(raw.load(fromByteOffset: 0, as: sa_family_t.self)) {
            case AF_INET:
                let a = raw.load(as: sockaddr_in.self)
                return withUnsafeBytes(of: a.sin_addr) { IPAddress(bytes: Array($0)) }
            case AF_INET6:
                let a = raw.load(as: sockaddr_in6.self)
                return withUnsafeBytes(of: a.sin6_addr) { IPAddress(bytes: Array($0)) }
            default:
                return nil
            }
        }
    }

    private func read(_ request: inout FCGX_Request) -> HTTPRequest {
        var params: [(name: String, value: String)] = []
        params.reserveCapacity(32)
        var env = request.envp
        while let entry = env?.pointee {
            // Split at the first "=" on the bytes: Character-by-Character search cost more than the rest of
            // a 404 put together (callgrind).
            if let eq = strchr(entry, Int32(UInt8(ascii: "="))) {
                let name = UnsafeRawBufferPointer(start: entry, count: entry.distance(to: eq))
                params.append((String(decoding: name, as: UTF8.self), String(cString: eq + 1)))
            }
            env = env?.advanced(by: 1)
        }
        var http = HTTPRequest(params: params)
        // The body is FCGI_STDIN up to its empty closing record, whatever CONTENT_LENGTH says: Apache sends
        // none for a chunked body, Caddy -1. One byte past the limit is enough to know it is too large.
        if let declared = http.declaredLength, declared > maxBodyBytes {
            http.bodyTooLarge = true
        } else {
            // Sized by the declared length (GETs declare none and get one byte); grown by doubling otherwise.
            var body = [UInt8](repeating: 0, count: min(http.declaredLength ?? 0, maxBodyBytes) + 1)
            var got = 0
            while true {
                if got == body.count {
                    guard body.count <= maxBodyBytes else { break }
                    body.append(contentsOf: repeatElement(0, count: min(max(body.count, 4096), maxBodyBytes + 1 - body.count)))
                }
                let n = body.withUnsafeMutableBufferPointer { buffer in
                    buffer.baseAddress!.advanced(by: got).withMemoryRebound(to: CChar.self, capacity: buffer.count - got) {
                        FCGX_GetStr($0, Int32(buffer.count - got), request.in)
                    }
                }
                if n <= 0 { break }
                got += Int(n)
            }
            body.removeLast(body.count - got)
            if got > maxBodyBytes {
                http.bodyTooLarge = true
                body.removeLast(got - maxBodyBytes)
            }
            http.body = body
        }
        if http.bodyTooLarge {
            // Drained, so that the answer is not lost to a reset from unread input, but only so far: a front end
            // may stream without end. Past that the connection is closed after the answer, so unread input can
            // never be taken for a next request on it.
            var scratch = [CChar](repeating: 0, count: 65_536)
            var drained = 0
            while drained < 8 * maxBodyBytes {
                let n = FCGX_GetStr(&scratch, Int32(scratch.count), request.in)
                if n <= 0 { break }
                drained += Int(n)
            }
            request.keepConnection = 0
        }
        return http
    }
}
