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
    /// Over TCP the peer's address is checked, before any FastCGI record is read, and a peer on this machine
    /// must be a front-end user too: the kernel tells which user owns its socket.
    public struct Access: Sendable {
        /// The socket file's group (the front end's); nil keeps this process's group.
        public var group: gid_t?
        /// Peer uids admitted; nil admits whoever can open the socket file.
        public var peers: Set<uid_t>?
        /// Peer addresses a TCP socket admits (WORKFCGI_FRONTEND_ADDRESSES).
        public var addresses: FrontendAddresses
        /// How long a connection has, from its accept (or a kept-alive one from its next request's first byte),
        /// to send a complete request: BEGIN_REQUEST, the params and the body (WORKFCGI_FASTCGI_READ_TIMEOUT).
        public var readTimeout: Duration
        /// Told of a refused peer (its uid and pid), at most once every 10 s, with how many refusals since.
        public var onRefused: @Sendable (_ uid: uid_t, _ pid: pid_t, _ count: Int) -> Void
        /// Told of a refused TCP peer (its address), at most once every 10 s, with how many refusals since.
        public var onRefusedAddress: @Sendable (_ address: String, _ count: Int) -> Void
        /// Told of a refused TCP peer on this machine (its address, and who owns its socket or why that is not
        /// known), at most once every 10 s, with how many refusals since.
        public var onRefusedLocalPeer: @Sendable (_ address: String, _ owner: LocalPeer, _ count: Int) -> Void
        /// Told of connections closed because their request was not complete within `readTimeout`, at most
        /// once every 10 s, with how many since.
        public var onReadTimeout: @Sendable (_ count: Int) -> Void
        /// Told of every refusal, for the metrics.
        public var counted: @Sendable (PeerRefusal) -> Void
        public init(
            group: gid_t?, peers: Set<uid_t>?, addresses: FrontendAddresses = .loopbackOnly, readTimeout: Duration = .seconds(5),
            onRefused: @escaping @Sendable (uid_t, pid_t, Int) -> Void = { _, _, _ in },
            onRefusedAddress: @escaping @Sendable (String, Int) -> Void = { _, _ in },
            onRefusedLocalPeer: @escaping @Sendable (String, LocalPeer, Int) -> Void = { _, _, _ in },
            onReadTimeout: @escaping @Sendable (Int) -> Void = { _ in },
            counted: @escaping @Sendable (PeerRefusal) -> Void = { _ in }
        ) {
            self.group = group
            self.peers = peers
            self.addresses = addresses
            self.readTimeout = readTimeout
            self.onRefused = onRefused
            self.onRefusedAddress = onRefusedAddress
            self.onRefusedLocalPeer = onRefusedLocalPeer
            self.onReadTimeout = onReadTimeout
            self.counted = counted
        }

        /// The one rule for a peer's user, on a unix socket (SO_PEERCRED) and over TCP from this machine
        /// (sock_diag): a front-end user, this process's own user or root (the set given), or anyone when no set is.
        public func admitsUser(_ uid: uid_t) -> Bool {
            peers?.contains(uid) ?? true
        }

        /// What becomes of a TCP connection from `peer`, decided before any byte of it is read. `isLocal` and
        /// `owner` ask the kernel, and are asked only when needed: a loopback peer is on this machine without
        /// asking, and a peer on another machine has no owner this machine could know.
        func tcpVerdict(peer: IPAddress, isLocal: () -> Result<Bool, LookupFailure>, owner: () -> LocalPeer) -> TCPVerdict {
            let peer = peer.unmappedIPv4 ?? peer
            guard addresses.admits(peer) else { return .refuse(.address, nil) }
            if !peer.isLoopback {
                switch isLocal() {
                case .success(false): return .admit  // another machine: its users cannot be told apart (README)
                case .failure(let failure): return .refuse(.localUser, .lookupFailed(failure))
                case .success(true): break
                }
            }
            let owner = owner()
            if case .user(let uid) = owner, admitsUser(uid) { return .admit }
            return .refuse(.localUser, owner)
        }
    }

    /// A TCP connection's fate on accept.
    enum TCPVerdict: Equatable {
        case admit
        /// Closed unread: why, and for a peer on this machine what the kernel said of its socket.
        case refuse(PeerRefusal, LocalPeer?)
    }

    /// A kernel lookup (sock_diag, the route to an address) that did not answer.
    public struct LookupFailure: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// What was asked: `sock_diag` or `route`.
        public var lookup: String
        public var errno: Int32
        public var description: String { "\(lookup) lookup failed: \(String(cString: strerror(errno)))" }
    }

    /// Who owns the socket at the other end of a TCP connection from this machine, as the kernel tells it.
    public enum LocalPeer: Sendable, Equatable, CustomStringConvertible {
        /// The user that created the socket.
        case user(uid_t)
        /// The socket is there, but no process holds it (closed, time-wait): nobody to vouch for what was sent.
        case unowned
        /// The address is this machine's but no such socket is (it was closed and reset meanwhile).
        case gone
        /// The kernel did not answer: refused, as nobody could be told apart.
        case lookupFailed(LookupFailure)

        public var description: String {
            switch self {
            case .user(let uid): "uid \(uid)"
            case .unowned: "its socket is no process's (closed)"
            case .gone: "its socket is gone"
            case .lookupFailed(let failure): "its user could not be looked up (\(failure))"
            }
        }
    }

    /// Why a peer was refused: the `reason` label of workfcgi_fastcgi_refused_peers_total.
    public enum PeerRefusal: String, Sendable, CaseIterable {
        /// A unix socket peer whose uid is not a front-end user's (answered 403).
        case user
        /// A TCP peer outside WORKFCGI_FRONTEND_ADDRESSES (closed unread).
        case address
        /// A TCP peer on this machine whose socket's user is not a front-end user's, or could not be looked
        /// up (closed unread).
        case localUser = "local_user"
    }

    /// One pool thread's FastCGI request and what it is doing.
    private final class Slot: @unchecked Sendable {
        var request = FCGX_Request()
        let state = Mutex(SlotState())
        /// The pool thread serving this slot (pthread_t), once it runs.
        let thread = Atomic<UInt>(0)
    }

    /// What `stop()` and the watchdog act on. `connection` is the slot's own descriptor of its connection, a
    /// dup of libfcgi's: libfcgi closes its own inside FCGX_Accept_r when a request is malformed, and that
    /// number may be another connection's by the time anyone acts on it. This one is closed only by the pool
    /// thread, after it is cleared here, so a shutdown through it always reaches the right connection.
    private struct SlotState {
        /// Waiting for a connection or, on a kept-alive one, for the next request.
        var idle = false
        var connection: Int32 = -1
        /// Uptime ns by which the watchdog shuts the connection down; 0: none.
        var deadline: UInt64 = 0
        /// The deadline is the request's (not the close's): expiring, it is logged.
        var reading = false
        var expired = false
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
    /// When each kind of refusal (and a read timeout, as nil) was last reported (uptime ns), and how many since.
    private let refusals = Mutex<[PeerRefusal?: (reportedAt: UInt64, count: Int)]>([:])
    /// The read deadline in ns, and how long an idle kept-alive connection may wait for its next request.
    private let readTimeout: UInt64
    static let keptAliveIdle: Int32 = 30_000
    /// How long closing a connection may wait for the peer's end (libfcgi reads until EOF, 2 s between reads
    /// but without a total: a peer sending a byte a second held it for ever).
    static let closeTimeout: UInt64 = 2_000_000_000
    /// The watchdog sleeps on this when no deadline is armed; arming one wakes it.
    private let watchdogWake = DispatchSemaphore(value: 0)
    private let watchdogParked = Atomic<Bool>(false)
    private let watchdogDone = Atomic<Bool>(false)

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
        if !host.isIPv4 {
            // Dual stack, whatever net.ipv6.bindv6only says: [::] takes IPv4 peers too (as ::ffff:a.b.c.d, checked
            // as the IPv4 address they are), as PHP-FPM's `listen = [::]:9000`; a specific IPv6 address is IPv6 only anyway.
            var zero: Int32 = 0
            guard setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Error(description: "cannot listen on \(label): IPV6_V6ONLY: \(reason)")
            }
        }
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
        let (seconds, attoseconds) = access.readTimeout.components
        readTimeout = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
        slots = (0..<threads).map { _ in Slot() }
    }

    /// Starts the pool threads.
    public func start() {
        let watchdog = Thread { [self] in
            workfcgi_name_thread("deadline-\(name)")
            watch()
        }
        watchdog.stackSize = 1 << 18
        watchdog.start()
        for (i, slot) in slots.enumerated() {
            // libfcgi gets no listening socket: the pool threads accept (TCP: checking the peer before libfcgi
            // reads a byte; both: starting the read deadline), and no path of libfcgi's own (a retry after a
            // malformed request) can accept a connection past that.
            FCGX_InitRequest(&slot.request, -1, 0)
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
            slot.state.withLock { state in
                // An idle thread may be waiting on a kept-alive connection from the front end: wake it.
                if state.idle && state.connection >= 0 { shutdown(state.connection, Int32(SHUT_RDWR)) }
            }
        }
    }

    /// Blocks until every pool thread has left, then removes the socket file (unless systemd owns it).
    public func wait() {
        // A thread about to enter accept when the first signal came is woken by a later one.
        while finished.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            if inherited && stopping.load(ordering: .sequentiallyConsistent) { wakeAcceptingThreads() }
        }
        watchdogDone.store(true, ordering: .sequentiallyConsistent)
        watchdogWake.signal()
        close(listenFD)
        if !inherited && !tcp { unlink(socketPath) }
    }

    private func wakeAcceptingThreads() {
        for slot in slots where slot.state.withLock({ $0.idle }) {
            let thread = slot.thread.load(ordering: .sequentiallyConsistent)
            if thread != 0 { _ = workfcgi_signal_thread(thread, Self.wakeSignal) }
        }
    }

    private func serve(_ slot: Slot) {
        while true {
            let proceed = slot.state.withLock { state -> Bool in
                if stopping.load(ordering: .sequentiallyConsistent) { return false }
                state.idle = true
                return true
            }
            guard proceed else { break }
            if slot.request.ipcFd < 0 {
                guard let fd = acceptAdmitted() else {
                    slot.state.withLock { $0.idle = false }
                    if stopping.load(ordering: .sequentiallyConsistent) { break }
                    continue
                }
                let own = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                guard own >= 0 else {
                    close(fd)
                    slot.state.withLock { $0.idle = false }
                    continue
                }
                // libfcgi reads the request from this connection as from one it kept alive.
                slot.request.ipcFd = fd
                slot.request.keepConnection = 1
                arm(slot, connection: own, after: readTimeout, reading: true)
            } else {
                // A connection the front end keeps alive (FCGI_KEEP_CONN): the next request may take as long as
                // an idle connection may stay, then has the read deadline from its first byte.
                guard nextRequestArrives(slot) else {
                    drop(slot)
                    if stopping.load(ordering: .sequentiallyConsistent) { break }
                    continue
                }
                arm(slot, connection: nil, after: readTimeout, reading: true)
            }
            let rc = FCGX_Accept_r(&slot.request)
            guard rc >= 0 else {
                // Malformed, cut short, or past the deadline: libfcgi closed its descriptor; ours goes too.
                drop(slot)
                if stopping.load(ordering: .sequentiallyConsistent) { break }
                continue
            }
            busy.add(1, ordering: .relaxed)
            defer { busy.subtract(1, ordering: .relaxed) }
            let request = read(&slot.request)
            let expired = slot.state.withLock { state -> Bool in
                state.deadline = 0
                state.reading = false
                return state.expired
            }
            // A request cut short (the peer went away, or the deadline shut it down) is not a request: a
            // truncated body must never be taken for the whole one.
            guard let request, !expired else {
                drop(slot)
                continue
            }
            let response: HTTPResponse
            // Over TCP the peer was checked on accept; SO_PEERCRED means nothing there.
            if !tcp, access.peers != nil, let peer = Self.peer(slot.request.ipcFd), !access.admitsUser(peer.uid) {
                access.counted(.user)
                if let count = noteRefusal(.user) { access.onRefused(peer.uid, peer.pid, count) }
                response = HTTPResponse.error(
                    403, code: "forbidden", message: "this FastCGI peer's user is not a front-end user (WORKFCGI_FRONTEND_USERS)")
            } else {
                response = handler(request)
            }
            let bytes = response.wireBytes
            bytes.withUnsafeBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    _ = FCGX_PutStr($0, Int32(buffer.count), slot.request.out)
                }
            }
            finish(slot)
        }
        // Close a kept-alive connection that the loop left open.
        if slot.request.ipcFd >= 0 { drop(slot) }
    }

    /// Sets the slot's deadline (and, for a new connection, its own descriptor), and wakes the watchdog if it sleeps.
    private func arm(_ slot: Slot, connection: Int32?, after nanoseconds: UInt64, reading: Bool) {
        let deadline = DispatchTime.now().uptimeNanoseconds + nanoseconds
        slot.state.withLock { state in
            state.idle = false
            if let connection { state.connection = connection }
            state.deadline = deadline
            state.reading = reading
            state.expired = false
        }
        if watchdogParked.load(ordering: .sequentiallyConsistent) && watchdogParked.exchange(false, ordering: .sequentiallyConsistent) {
            watchdogWake.signal()
        }
    }

    /// Whether the next request's first byte arrives on a kept-alive connection before it has been idle too long.
    private func nextRequestArrives(_ slot: Slot) -> Bool {
        let fd = slot.state.withLock { $0.connection }
        guard fd >= 0 else { return false }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&entry, 1, Self.keptAliveIdle)
            if n < 0 && errno == EINTR && !stopping.load(ordering: .sequentiallyConsistent) { continue }
            return n > 0 && entry.revents & Int16(POLLIN) != 0 && !stopping.load(ordering: .sequentiallyConsistent)
        }
    }

    /// The slot's connection is abandoned unanswered: closed at once (libfcgi would first wait to read the
    /// peer's end), with the slot's own descriptor.
    private func drop(_ slot: Slot) {
        slot.request.detached = 1
        FCGX_Free(&slot.request, 1)
        release(slot)
    }

    /// Clears the slot's state, then closes its own descriptor (no shutdown can reach it after this).
    private func release(_ slot: Slot) {
        let fd = slot.state.withLock { state -> Int32 in
            let fd = state.connection
            state = SlotState()
            return fd
        }
        if fd >= 0 { close(fd) }
    }

    /// FCGX_Finish_r, with the close bounded: flushes the answer and the end-of-request record, then keeps the
    /// connection (FCGI_KEEP_CONN) or closes it, reading the peer's end for at most `closeTimeout`.
    private func finish(_ slot: Slot) {
        var close = slot.request.keepConnection == 0
        if FCGX_FClose(slot.request.err) != 0 { close = true }
        if FCGX_FClose(slot.request.out) != 0 { close = true }
        if FCGX_GetError(slot.request.in) != 0 { close = true }
        guard close else {
            FCGX_Free(&slot.request, 0)
            return
        }
        arm(slot, connection: nil, after: Self.closeTimeout, reading: false)
        FCGX_Free(&slot.request, 1)
        release(slot)
    }

    /// The watchdog: shuts down every connection past its deadline, which wakes its pool thread's read with an
    /// end of file. Sleeps until the nearest deadline, or until one is armed when none is.
    private func watch() {
        while !watchdogDone.load(ordering: .sequentiallyConsistent) {
            var (next, timedOut) = expire()
            if timedOut > 0, let count = noteRefusal(nil, by: timedOut) { access.onReadTimeout(count) }
            if next == .max {
                watchdogParked.store(true, ordering: .sequentiallyConsistent)
                // A deadline armed between the scan and parking saw no parked watchdog: look again.
                (next, timedOut) = expire()
                if timedOut > 0, let count = noteRefusal(nil, by: timedOut) { access.onReadTimeout(count) }
                if next == .max && !watchdogDone.load(ordering: .sequentiallyConsistent) { watchdogWake.wait() }
                watchdogParked.store(false, ordering: .sequentiallyConsistent)
            } else {
                _ = watchdogWake.wait(timeout: DispatchTime(uptimeNanoseconds: next))
            }
        }
    }

    /// Shuts down the connections past their deadline; returns the nearest deadline still armed (.max: none)
    /// and how many requests timed out.
    private func expire() -> (next: UInt64, timedOut: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        var next = UInt64.max
        var timedOut = 0
        for slot in slots {
            slot.state.withLock { state in
                guard state.deadline != 0 else { return }
                guard state.deadline <= now else {
                    next = min(next, state.deadline)
                    return
                }
                if state.connection >= 0 { shutdown(state.connection, Int32(SHUT_RDWR)) }
                if state.reading { timedOut += 1 }
                state.deadline = 0
                state.expired = true
            }
        }
        return (next, timedOut)
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

    /// Counts refusals of one kind (nil: read timeouts); returns how many to report when that kind's last
    /// report is 10 s old (or there was none). Each kind has its own window, so one flood hides no other.
    private func noteRefusal(_ kind: PeerRefusal?, by count: Int = 1) -> Int? {
        let now = DispatchTime.now().uptimeNanoseconds
        return refusals.withLock { all -> Int? in
            var state = all[kind] ?? (0, 0)
            state.count += count
            defer { all[kind] = state }
            guard state.reportedAt == 0 || now &- state.reportedAt >= 10_000_000_000 else { return nil }
            defer { state = (now, 0) }
            return state.count
        }
    }

    /// The next connection. Over TCP only one from an admitted peer (address, and on this machine user); others
    /// are closed unread (counted, reported). nil when accept fails (the socket was shut down, or a connection
    /// vanished before it was taken).
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
            // A unix socket peer's user is checked once its request is read (answered 403).
            guard tcp else { return fd }
            let peer = Self.endpoint(storage)
            let verdict: TCPVerdict =
                if let peer {
                    access.tcpVerdict(
                        peer: peer.address, isLocal: { Self.isLocal(peer.address) }, owner: { Self.owner(of: fd, peer: peer) })
                } else {
                    .refuse(.address, nil)
                }
            switch verdict {
            case .admit:
                // libfcgi writes the end-of-request record apart from the body: without this, Nagle's algorithm
                // holds it until the front end's delayed ACK (40 ms).
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            case .refuse(let reason, let owner):
                close(fd)
                access.counted(reason)
                guard let count = noteRefusal(reason) else { continue }
                let address = peer?.address.description ?? "?"
                if let owner { access.onRefusedLocalPeer(address, owner, count) } else { access.onRefusedAddress(address, count) }
            }
        }
    }

    /// Whether an address is this machine's (asked only for a peer outside loopback).
    static func isLocal(_ address: IPAddress) -> Result<Bool, LookupFailure> {
        let address = address.unmappedIPv4 ?? address
        let rc = address.bytes.withUnsafeBufferPointer { workfcgi_is_local_address(address.isIPv4 ? AF_INET : AF_INET6, $0.baseAddress) }
        return rc < 0 ? .failure(LookupFailure(lookup: "route", errno: -rc)) : .success(rc == 1)
    }

    /// Who owns the peer's socket of an accepted connection from this machine (sock_diag, by the 4-tuple).
    static func owner(of fd: Int32, peer: (address: IPAddress, port: UInt16)) -> LocalPeer {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0, let local = endpoint(storage) else {
            return .lookupFailed(LookupFailure(lookup: "sock_diag", errno: errno))
        }
        // An IPv4 peer of a dual-stack [::] socket: both ends are IPv4 to the kernel's lookup.
        var (peerAddress, localAddress) = (peer.address, local.address)
        if let p = peerAddress.unmappedIPv4, let l = localAddress.unmappedIPv4 { (peerAddress, localAddress) = (p, l) }
        var uid: UInt32 = 0
        let rc = peerAddress.bytes.withUnsafeBufferPointer { p in
            localAddress.bytes.withUnsafeBufferPointer { l in
                workfcgi_tcp_peer_owner(peerAddress.isIPv4 ? AF_INET : AF_INET6, p.baseAddress, peer.port, l.baseAddress, local.port, &uid)
            }
        }
        switch rc {
        case 0: return .user(uid_t(uid))
        case 1: return .unowned
        case 2: return .gone
        default: return .lookupFailed(LookupFailure(lookup: "sock_diag", errno: -rc))
        }
    }

    /// The IP address and port of a socket address.
    static func endpoint(_ storage: sockaddr_storage) -> (address: IPAddress, port: UInt16)? {
        var storage = storage
        return withUnsafeBytes(of: &storage) { raw -> (IPAddress, UInt16)? in
            switch Int32(raw.load(fromByteOffset: 0, as: sa_family_t.self)) {
            case AF_INET:
                let a = raw.load(as: sockaddr_in.self)
                return withUnsafeBytes(of: a.sin_addr) { IPAddress(bytes: Array($0)) }.map { ($0, UInt16(bigEndian: a.sin_port)) }
            case AF_INET6:
                let a = raw.load(as: sockaddr_in6.self)
                return withUnsafeBytes(of: a.sin6_addr) { IPAddress(bytes: Array($0)) }.map { ($0, UInt16(bigEndian: a.sin6_port)) }
            default:
                return nil
            }
        }
    }

    /// The request's params and body; nil when the body was cut short (the stream failed before its end: the
    /// peer went away, or the read deadline shut the connection down).
    private func read(_ request: inout FCGX_Request) -> HTTPRequest? {
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
        } else if FCGX_GetError(request.in) != 0 {
            return nil
        }
        return http
    }
}
