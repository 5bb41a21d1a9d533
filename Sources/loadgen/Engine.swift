import CSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP engine: one thread, non-blocking keep-alive connections on epoll, each request written as
/// prepared bytes and each answer parsed just enough (status line, Content-Length or chunked, the error
/// code) — the work wrk does per request, so the generator is not what a run measures. Several series can
/// run at once (`--mode mixed`), each with its own pacing and connections; every outcome is classified as
/// it ends. An open loop's due requests wait for a free connection, their latency counting from the
/// intended time all the same.
final class Engine: @unchecked Sendable {
    struct Series: Sendable {
        var name: String
        var url: String
        var body: [UInt8]
        var pacing: Pacing
        var requests: Int?
        var duration: Double?
        var okStatus: Int
        /// GET instead of POST (no body): `--mode get`, e.g. /healthz against wrk.
        var get = false
        /// Kept-alive connections of this series (in a closed loop, also the requests in flight).
        var connections = 50
    }

    /// What one request produced, for the statistics and for the callback bookkeeping.
    struct Result: Sendable {
        var series: Int
        var outcome: Outcome
        var requestID: String?
        /// Wall-clock send time (intended time in an open loop), for time-to-callback.
        var sentAt: Date
    }

    struct Progress: Sendable {
        var elapsed: Double
        var sent: Int
        var errors: Int
    }

    struct URLError: Error, CustomStringConvertible { var description: String }

    let timeout: Double
    let sources: [String]

    init(timeout: Double, sources: [String]) {
        self.timeout = timeout
        self.sources = sources
    }

    /// One kept-alive connection of a series and the request it carries.
    private final class Connection {
        enum State {
            /// No socket: the next request opens one.
            case closed
            /// Open and kept alive, no request on it.
            case idle
            /// A non-blocking connect under way; the request waits for it.
            case connecting
            /// The request's first `written` bytes are out (the answer may already be coming).
            case writing(written: Int)
            /// The request is out; the answer gathers in `input`.
            case reading
        }

        let series: Int
        var fd: Int32 = -1
        var state = State.closed
        /// The request carried: its number in the series and when it went (ns after the run's start).
        var n = 0
        var sent: UInt64 = 0
        var input: [UInt8] = []
        init(series: Int) { self.series = series }

        /// Carrying a request (connecting, writing or reading).
        var busy: Bool {
            switch state {
            case .closed, .idle: false
            case .connecting, .writing, .reading: true
            }
        }
    }

    /// One `run`'s world: the epoll set, the connections, and what each series has issued, has in flight and
    /// has produced. Its methods are the engine's steps; `run` is the loop around them.
    private final class Run {
        let series: [Series]
        let prepared: [(address: sockaddr_in, request: [UInt8])]
        let sources: [String]
        let timeoutNs: UInt64
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        let connections: [[Connection]]
        var byFD: [Int32: Connection] = [:]
        var issued: [Int]
        var inFlight: [Int]
        var results: [Result] = []
        var errors = 0
        var source = 0
        let start = DispatchTime.now().uptimeNanoseconds
        let wallStart = Date()
        var scratch = [UInt8](repeating: 0, count: 65_536)

        init(_ series: [Series], prepared: [(address: sockaddr_in, request: [UInt8])], sources: [String], timeout: Double) {
            self.series = series
            self.prepared = prepared
            self.sources = sources
            timeoutNs = UInt64(timeout * 1e9)
            connections = series.indices.map { i in (0..<max(1, series[i].connections)).map { _ in Connection(series: i) } }
            issued = [Int](repeating: 0, count: series.count)
            inFlight = [Int](repeating: 0, count: series.count)
        }

        deinit {
            for group in connections { for c in group { drop(c) } }
            close(epoll)
        }

        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds - start }

        func finishedIssuing(_ i: Int, _ t: UInt64) -> Bool {
            if let limit = series[i].requests, issued[i] >= limit { return true }
            if let seconds = series[i].duration, Double(t) / 1e9 >= seconds { return true }
            return false
        }

        /// Every series done issuing and every answer in.
        func over(_ t: UInt64) -> Bool {
            series.indices.allSatisfy { finishedIssuing($0, t) } && inFlight.allSatisfy { $0 == 0 }
        }

        /// Starts what each series' pacing says is due, on its free connections.
        func issueDue(_ t: UInt64) {
            for i in series.indices where !finishedIssuing(i, t) {
                var due = series[i].pacing.due(issued: issued[i], inFlight: inFlight[i], now: t)
                if let limit = series[i].requests { due = min(due, limit - issued[i]) }
                var k = 0
                while due > 0 && k < connections[i].count {
                    let c = connections[i][k]
                    k += 1
                    guard !c.busy else { continue }
                    begin(c, i)
                    due -= 1
                }
            }
        }

        /// Milliseconds to wait for a ready socket: until the next open-loop send, or the next timeout check.
        func wait(_ t: UInt64) -> Int32 {
            var wait: Int32 = 20
            for i in series.indices where !finishedIssuing(i, t) {
                if let next = series[i].pacing.intended(issued[i]) { wait = min(wait, Int32(max(0, (Int64(next) - Int64(t)) / 1_000_000))) }
            }
            return wait
        }

        /// A socket epoll reported.
        func ready(_ e: epoll_event) {
            guard let c = byFD[e.data.fd], c.busy else {
                // An idle kept-alive connection closed by the server: forget it.
                if let c = byFD[e.data.fd] { drop(c) }
                return
            }
            if case .connecting = c.state {
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length)
                guard error == 0 else { return fail(c, .connectionError(String(cString: strerror(error)))) }
                c.state = .writing(written: 0)
            }
            if e.events & EPOLLOUT.rawValue != 0, case .writing = c.state { send(c) }
            guard c.busy, e.events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 else { return }
            var closed = false
            while true {
                let got = recv(c.fd, &scratch, scratch.count, Int32(MSG_DONTWAIT))
                if got > 0 { c.input.append(contentsOf: scratch[0..<got]); continue }
                if got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { closed = true }
                break
            }
            if let answer = Engine.parse(c.input, closed: closed) {
                let body = c.input[answer.bodyStart..<answer.end]
                finish(c, answer.status == series[c.series].okStatus ? .success : .refused(status: answer.status, code: nil, message: nil), body: body)
                if !answer.keepAlive || closed { drop(c) } else { c.input.removeAll(keepingCapacity: true) }
            } else if closed {
                fail(c, .connectionError(c.input.isEmpty ? "connection closed before an answer" : "connection closed mid-answer"))
            }
        }

        /// Ends the requests that have waited longer than the timeout.
        func expire(_ t: UInt64) {
            for group in connections {
                for c in group where c.busy && t - c.sent > timeoutNs { fail(c, .timeout) }
            }
        }

        private func begin(_ c: Connection, _ i: Int) {
            c.n = issued[i]
            c.sent = now()
            c.input.removeAll(keepingCapacity: true)
            issued[i] += 1
            inFlight[i] += 1
            if case .idle = c.state {
                c.state = .writing(written: 0)
                return send(c)
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if !sources.isEmpty {
                var local = sockaddr_in()
                local.sin_family = sa_family_t(AF_INET)
                inet_pton(AF_INET, sources[source % sources.count], &local.sin_addr)
                source += 1
                _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            var address = prepared[i].address
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            c.fd = fd
            byFD[fd] = c
            if rc == 0 {
                c.state = .writing(written: 0)
                send(c)
            } else if errno == EINPROGRESS {
                c.state = .connecting
                watch(c, writing: true)
            } else {
                fail(c, .connectionError(String(cString: strerror(errno))))
            }
        }

        private func send(_ c: Connection) {
            guard case .writing(var written) = c.state else { return }
            let request = prepared[c.series].request
            while written < request.count {
                let n = request[written...].withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { written += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c.state = .writing(written: written)
                    return watch(c, writing: true)
                }
                return fail(c, .connectionError(String(cString: strerror(errno))))
            }
            c.state = .reading
            watch(c, writing: false)
        }

        private func watch(_ c: Connection, writing: Bool) {
            var event = epoll_event(events: EPOLLIN.rawValue | (writing ? EPOLLOUT.rawValue : 0), data: epoll_data_t(fd: c.fd))
            if epoll_ctl(epoll, EPOLL_CTL_MOD, c.fd, &event) != 0 { epoll_ctl(epoll, EPOLL_CTL_ADD, c.fd, &event) }
        }

        /// The request ends with `kind`; the connection stays open (idle) for the next one.
        private func finish(_ c: Connection, _ kind: Outcome.Kind, body: ArraySlice<UInt8> = []) {
            let s = series[c.series]
            let done = now()
            var requestID: String?
            var outcome = kind
            if case .refused(let status, _, _) = kind {
                let bytes = Array(body)
                outcome = .refused(status: status, code: Engine.field("code", in: bytes), message: Engine.field("message", in: bytes))
            } else if kind == .success && s.okStatus == 202 {
                requestID = Engine.field("request_id", in: Array(body))
            }
            if outcome != .success { errors += 1 }
            let latency = s.pacing.latency(n: c.n, sent: c.sent, done: done)
            let sentAt = wallStart.addingTimeInterval(Double(s.pacing.intended(c.n) ?? c.sent) / 1e9)
            results.append(Result(
                series: c.series, outcome: Outcome(kind: outcome, micros: latency / 1000, at: Double(done) / 1e9), requestID: requestID,
                sentAt: sentAt))
            c.state = .idle
            inFlight[c.series] -= 1
        }

        /// The request ends with an error, and its connection with it.
        private func fail(_ c: Connection, _ kind: Outcome.Kind) {
            finish(c, kind)
            drop(c)
        }

        private func drop(_ c: Connection) {
            if c.fd >= 0 {
                epoll_ctl(epoll, EPOLL_CTL_DEL, c.fd, nil)
                byFD[c.fd] = nil
                close(c.fd)
            }
            c.fd = -1
            c.state = .closed
            c.input.removeAll(keepingCapacity: true)
        }
    }

    /// http://HOST:PORT/PATH → a resolved IPv4 address, and the request's bytes.
    static func prepare(_ s: Series) throws(URLError) -> (address: sockaddr_in, request: [UInt8]) {
        guard s.url.hasPrefix("http://") else { throw URLError(description: "\(s.url): only http:// URLs") }
        let rest = s.url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        let path = rest[slash...].isEmpty ? "/" : String(rest[slash...])
        let parts = authority.split(separator: ":")
        let host = String(parts.first ?? "127.0.0.1")
        let port = parts.count > 1 ? UInt16(parts[1]) : 80
        guard let port else { throw URLError(description: "\(s.url): bad port") }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list, let sa = first.pointee.ai_addr else {
            throw URLError(description: "\(s.url): \(host) does not resolve to an IPv4 address")
        }
        defer { freeaddrinfo(list) }
        var address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
        address.sin_port = port.bigEndian
        var head = "\(s.get ? "GET" : "POST") \(path) HTTP/1.1\r\nHost: \(authority)\r\nUser-Agent: workfcgi-loadgen\r\n"
        if !s.get { head += "Content-Type: application/json\r\nContent-Length: \(s.body.count)\r\n" }
        return (address, Array((head + "\r\n").utf8) + (s.get ? [] : s.body))
    }

    /// Where a complete answer ends in `buffer` and its status, or nil while it is incomplete. `closed`: the
    /// peer has closed, which ends an answer that has neither a length nor chunks. Works on bytes: this runs
    /// once per request, and String processing here cost more than the rest of the engine.
    static func parse(_ buffer: [UInt8], closed: Bool) -> (end: Int, status: Int, bodyStart: Int, keepAlive: Bool)? {
        guard buffer.count >= 16, let headerEnd = find([13, 10, 13, 10], in: buffer, from: 0) else { return nil }
        // "HTTP/1.1 200 ..."
        guard buffer[0] == UInt8(ascii: "H"), let status = number(buffer, 9, 12, radix: 10) else { return (buffer.count, 0, buffer.count, false) }
        var length: Int?
        var chunked = false
        var keepAlive = buffer[7] == UInt8(ascii: "1")
        var line = (find([13, 10], in: buffer, from: 0) ?? headerEnd) + 2
        while line < headerEnd {
            let lineEnd = find([13, 10], in: buffer, from: line) ?? headerEnd
            if let value = headerValue(buffer, line, lineEnd, "content-length:") {
                length = number(buffer, value, lineEnd, radix: 10)
            } else if let value = headerValue(buffer, line, lineEnd, "transfer-encoding:") {
                chunked = contains(buffer, value, lineEnd, "chunked")
            } else if let value = headerValue(buffer, line, lineEnd, "connection:") {
                keepAlive = !contains(buffer, value, lineEnd, "close")
            }
            line = lineEnd + 2
        }
        let bodyStart = headerEnd + 4
        if let length { return buffer.count >= bodyStart + length ? (bodyStart + length, status, bodyStart, keepAlive) : nil }
        if chunked {
            var i = bodyStart
            while true {
                guard let lineEnd = find([13, 10], in: buffer, from: i) else { return nil }
                var sizeEnd = i
                while sizeEnd < lineEnd && buffer[sizeEnd] != UInt8(ascii: ";") && buffer[sizeEnd] != 32 { sizeEnd += 1 }
                guard let size = number(buffer, i, sizeEnd, radix: 16) else { return (buffer.count, status, bodyStart, false) }
                if size == 0 {
                    // The last chunk, then trailers (usually none) up to an empty line.
                    guard let end = find([13, 10, 13, 10], in: buffer, from: lineEnd) else { return nil }
                    return (end + 4, status, bodyStart, keepAlive)
                }
                i = lineEnd + 2 + size + 2
                if i > buffer.count { return nil }
            }
        }
        return closed ? (buffer.count, status, bodyStart, false) : nil
    }

    /// Where the value of header `name` (lower case, with its colon) starts, when the line at start..<end is it.
    static func headerValue(_ b: [UInt8], _ start: Int, _ end: Int, _ name: StaticString) -> Int? {
        let count = name.utf8CodeUnitCount
        guard end - start >= count else { return nil }
        let matches = name.withUTF8Buffer { n -> Bool in
            for k in 0..<count {
                var c = b[start + k]
                if c >= 65 && c <= 90 { c += 32 }
                if c != n[k] { return false }
            }
            return true
        }
        guard matches else { return nil }
        var i = start + count
        while i < end && b[i] == 32 { i += 1 }
        return i
    }

    static func contains(_ b: [UInt8], _ start: Int, _ end: Int, _ word: StaticString) -> Bool {
        let lower = (b[start..<end].map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 })
        return word.withUTF8Buffer { w in find(Array(w), in: lower, from: 0) != nil }
    }

    static func number(_ b: [UInt8], _ start: Int, _ end: Int, radix: Int) -> Int? {
        var value = 0
        var digits = 0
        for i in start..<min(end, b.count) {
            let c = b[i]
            let d: Int
            switch c {
            case 48...57: d = Int(c) - 48
            case 97...102 where radix == 16: d = Int(c) - 87
            case 65...70 where radix == 16: d = Int(c) - 55
            case 32 where digits == 0: continue
            default: return digits > 0 ? value : nil
            }
            value = value * radix + d
            digits += 1
            if value > 1 << 40 { return nil }
        }
        return digits > 0 ? value : nil
    }

    static func find(_ needle: [UInt8], in buffer: [UInt8], from start: Int) -> Int? {
        guard buffer.count >= needle.count, start <= buffer.count - needle.count else { return nil }
        return buffer.withUnsafeBufferPointer { b -> Int? in
            var i = max(0, start)
            outer: while i <= b.count - needle.count {
                for (k, byte) in needle.enumerated() where b[i + k] != byte {
                    i += 1
                    continue outer
                }
                return i
            }
            return nil
        }
    }

    /// Runs every series to its end (count or duration, then its last answers), calling `progress` about
    /// four times a second from the engine's thread.
    func run(_ series: [Series], progress: (Progress) -> Void) -> [Result] {
        var prepared: [(address: sockaddr_in, request: [UInt8])] = []
        for s in series {
            do {
                prepared.append(try Self.prepare(s))
            } catch {
                FileHandle.standardError.write(Data("loadgen: \(error)\n".utf8))
                return []
            }
        }
        let run = Run(series, prepared: prepared, sources: sources, timeout: timeout)
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        var lastProgress: UInt64 = 0
        while true {
            let t = run.now()
            run.issueDue(t)
            let n = epoll_wait(run.epoll, &events, Int32(events.count), run.wait(t))
            for e in events[0..<max(0, Int(n))] { run.ready(e) }
            let after = run.now()
            run.expire(after)
            if after - lastProgress > 250_000_000 {
                lastProgress = after
                progress(Progress(elapsed: Double(after) / 1e9, sent: run.issued.reduce(0, +), errors: run.errors))
            }
            if run.over(after) { return run.results }
        }
    }

    /// A top-level or nested string field of a small JSON answer, found without a full parse.
    static func field(_ name: String, in body: [UInt8]) -> String? {
        guard let text = String(bytes: body, encoding: .utf8),
            let key = text.range(of: "\"\(name)\":\"")
        else { return nil }
        var out = ""
        var escaped = false
        for c in text[key.upperBound...] {
            if escaped { out.append(c); escaped = false; continue }
            if c == "\\" { escaped = true; continue }
            if c == "\"" { return out }
            out.append(c)
        }
        return nil
    }
}
