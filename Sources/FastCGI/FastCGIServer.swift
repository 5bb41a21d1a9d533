import CFastCGI
import Foundation
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
/// request, answer it, and then leave.
public final class FastCGIServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    /// One pool thread's FastCGI request and whether it is waiting for the next request.
    private final class Slot: @unchecked Sendable {
        var request = FCGX_Request()
        let idle = Mutex(false)
    }

    private let socketPath: String
    private let listenFD: Int32
    private let maxBodyBytes: Int
    private let handler: Handler
    private let slots: [Slot]
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchGroup()

    /// Must run once per process before any server is created.
    public static func initialize() {
        FCGX_Init()
    }

    /// Opens the unix socket at `socketPath` (replacing a stale one) with the given accept backlog.
    public init(socketPath: String, threads: Int, backlog: Int = 256, maxBodyBytes: Int, handler: @escaping Handler) throws {
        self.socketPath = socketPath
        self.maxBodyBytes = maxBodyBytes
        self.handler = handler
        unlink(socketPath)
        let fd = FCGX_OpenSocket(socketPath, Int32(backlog))
        guard fd >= 0 else { throw Error(description: "cannot listen on \(socketPath): \(String(cString: strerror(errno)))") }
        // nginx's workers may run as another user than this process.
        chmod(socketPath, 0o666)
        listenFD = fd
        slots = (0..<threads).map { _ in Slot() }
    }

    /// Starts the pool threads.
    public func start() {
        for slot in slots {
            FCGX_InitRequest(&slot.request, listenFD, 0)
            finished.enter()
            let thread = Thread { [self] in
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
        shutdown(listenFD, Int32(SHUT_RDWR))
        for slot in slots {
            slot.idle.withLock { idle in
                // An idle thread may be parked on a kept-alive connection from nginx: wake its read.
                if idle && slot.request.ipcFd >= 0 { shutdown(slot.request.ipcFd, Int32(SHUT_RDWR)) }
            }
        }
    }

    /// Blocks until every pool thread has left, then removes the socket file.
    public func wait() {
        finished.wait()
        close(listenFD)
        unlink(socketPath)
    }

    private func serve(_ slot: Slot) {
        while true {
            let proceed = slot.idle.withLock { idle -> Bool in
                if stopping.load(ordering: .sequentiallyConsistent) { return false }
                idle = true
                return true
            }
            guard proceed else { break }
            let rc = FCGX_Accept_r(&slot.request)
            slot.idle.withLock { $0 = false }
            guard rc >= 0 else {
                if stopping.load(ordering: .sequentiallyConsistent) { break }
                // A connection that failed mid-request: drop it and keep serving.
                FCGX_Free(&slot.request, 1)
                continue
            }
            let request = read(slot.request)
            let response = handler(request)
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

    private func read(_ request: FCGX_Request) -> HTTPRequest {
        func param(_ name: String) -> String? {
            FCGX_GetParam(name, request.envp).map { String(cString: $0) }
        }
        var headers: [String: String] = [:]
        var env = request.envp
        while let entry = env?.pointee {
            let text = String(cString: entry)
            if text.hasPrefix("HTTP_"), let eq = text.firstIndex(of: "=") {
                let name = text[text.index(text.startIndex, offsetBy: 5)..<eq].lowercased().replacingOccurrences(of: "_", with: "-")
                headers[name] = String(text[text.index(after: eq)...])
            }
            env = env?.advanced(by: 1)
        }
        if let contentType = param("CONTENT_TYPE"), !contentType.isEmpty { headers["content-type"] = contentType }

        let declared = max(0, Int(param("CONTENT_LENGTH") ?? "") ?? 0)
        var body: [UInt8] = []
        let tooLarge = declared > maxBodyBytes
        if tooLarge {
            // Drain it: on a kept-alive connection, unread input would be taken for the next request.
            var scratch = [CChar](repeating: 0, count: 65_536)
            while FCGX_GetStr(&scratch, Int32(scratch.count), request.in) > 0 {}
        } else if declared > 0 {
            body = [UInt8](repeating: 0, count: declared)
            var got = 0
            while got < declared {
                let n = body.withUnsafeMutableBufferPointer { buffer in
                    buffer.baseAddress!.advanced(by: got).withMemoryRebound(to: CChar.self, capacity: declared - got) {
                        FCGX_GetStr($0, Int32(declared - got), request.in)
                    }
                }
                if n <= 0 { break }
                got += Int(n)
            }
            body.removeLast(declared - got)
        }

        let uri = param("DOCUMENT_URI") ?? param("SCRIPT_NAME") ?? "/"
        return HTTPRequest(
            method: param("REQUEST_METHOD") ?? "GET",
            path: uri,
            query: HTTPRequest.parseQuery(param("QUERY_STRING") ?? ""),
            headers: headers,
            remoteAddress: param("REMOTE_ADDR") ?? "",
            body: body,
            bodyTooLarge: tooLarge,
            receivedAt: param("REQUEST_START").flatMap(Double.init))
    }
}
