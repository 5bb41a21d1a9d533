import CCurl
import CSystem
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The HTTP engine: one thread drives every transfer through libcurl's multi socket interface and epoll
/// (kept-alive connections, thousands in flight, no thread each, and only ready sockets looked at).
/// Several series can run at once (`--mode mixed`), each with its own pacing; every request's outcome is
/// classified as it ends.
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
    }

    /// What one request produced, for the statistics and for the callback bookkeeping.
    struct Result: Sendable {
        var series: Int
        var outcome: Outcome
        var requestID: String?
        /// Wall-clock send time (intended time in an open loop), for time-to-callback.
        var sentAt: Date
    }

    /// One easy handle and the bytes of the response it is receiving.
    private final class Transfer {
        let handle: UnsafeMutableRawPointer
        var body: [UInt8] = []
        var series = 0
        var n = 0
        var sent: UInt64 = 0
        /// The series whose options the handle carries (set once, kept between transfers); -1 for none.
        var configuredFor = -1
        init(handle: UnsafeMutableRawPointer) { self.handle = handle }
    }

    let timeout: Double
    let sources: [String]
    private let headers: UnsafeMutablePointer<curl_slist>?

    init(timeout: Double, sources: [String]) {
        self.timeout = timeout
        self.sources = sources
        var list: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Content-Type: application/json")
        list = curl_slist_append(list, "Expect:")
        headers = list
    }

    deinit { curl_slist_free_all(headers) }

    struct Progress: Sendable {
        var elapsed: Double
        var sent: Int
        var errors: Int
    }

    /// What curl asks of the event loop: the epoll set to keep its sockets in, and its next timeout.
    private final class Events {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        /// Milliseconds until curl wants `socket_action(CURL_SOCKET_TIMEOUT)`; -1 for none.
        var timeout = -1
        deinit { close(epoll) }
    }

    /// Runs every series to its end (count or duration, then its last answers), calling `progress` about
    /// four times a second from the engine's thread.
    func run(_ series: [Series], progress: (Progress) -> Void) -> [Result] {
        let multi = curl_multi_init()!
        defer { curl_multi_cleanup(multi) }
        _ = workfcgi_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, 20_000)
        let events = Events()
        let context = Unmanaged.passUnretained(events).toOpaque()
        let onSocket: @convention(c) (UnsafeMutableRawPointer?, Int32, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
            _, fd, what, userp, _ in
            guard let userp else { return 0 }
            let events = Unmanaged<Events>.fromOpaque(userp).takeUnretainedValue()
            if what == CURL_POLL_REMOVE {
                epoll_ctl(events.epoll, EPOLL_CTL_DEL, fd, nil)
                return 0
            }
            var wanted: UInt32 = 0
            if what == CURL_POLL_IN || what == CURL_POLL_INOUT { wanted |= EPOLLIN.rawValue }
            if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { wanted |= EPOLLOUT.rawValue }
            var event = epoll_event(events: wanted, data: epoll_data_t(fd: fd))
            if epoll_ctl(events.epoll, EPOLL_CTL_MOD, fd, &event) != 0 { epoll_ctl(events.epoll, EPOLL_CTL_ADD, fd, &event) }
            return 0
        }
        let onTimer: @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32 = { _, ms, userp in
            guard let userp else { return 0 }
            Unmanaged<Events>.fromOpaque(userp).takeUnretainedValue().timeout = ms
            return 0
        }
        _ = workfcgi_curl_multi_socket_function(multi, onSocket, context)
        _ = workfcgi_curl_multi_timer_function(multi, onTimer, context)
        var ready = [epoll_event](repeating: epoll_event(), count: 256)
        var idle: [Transfer] = []
        var running: [UnsafeMutableRawPointer: Transfer] = [:]
        var issued = [Int](repeating: 0, count: series.count)
        var inFlight = [Int](repeating: 0, count: series.count)
        var results: [Result] = []
        var errors = 0
        var source = 0
        let start = DispatchTime.now().uptimeNanoseconds
        let wallStart = Date()
        var lastProgress: UInt64 = 0
        let onBody: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, context in
            guard let data, let context else { return 0 }
            let transfer = Unmanaged<AnyObject>.fromOpaque(context).takeUnretainedValue() as! Transfer
            if transfer.body.count < 65_536 {
                data.withMemoryRebound(to: UInt8.self, capacity: size * count) {
                    transfer.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: size * count))
                }
            }
            return size * count
        }

        func finishedIssuing(_ i: Int, _ now: UInt64) -> Bool {
            if let limit = series[i].requests, issued[i] >= limit { return true }
            if let seconds = series[i].duration, Double(now) / 1e9 >= seconds { return true }
            return false
        }

        while true {
            let now = DispatchTime.now().uptimeNanoseconds - start
            for i in series.indices where !finishedIssuing(i, now) {
                var due = series[i].pacing.due(issued: issued[i], inFlight: inFlight[i], now: now)
                if let limit = series[i].requests { due = min(due, limit - issued[i]) }
                for _ in 0..<max(0, due) {
                    let transfer = idle.popLast() ?? Transfer(handle: curl_easy_init())
                    transfer.body.removeAll(keepingCapacity: true)
                    transfer.series = i
                    transfer.n = issued[i]
                    transfer.sent = DispatchTime.now().uptimeNanoseconds - start
                    let h = transfer.handle
                    // An easy handle keeps its options between transfers: set them when it changes series only.
                    if transfer.configuredFor != i {
                        transfer.configuredFor = i
                        _ = workfcgi_curl_setopt_string(h, CURLOPT_URL, series[i].url)
                        _ = workfcgi_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
                        _ = workfcgi_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(timeout * 1000))
                        _ = workfcgi_curl_setopt_string(h, CURLOPT_NOPROXY, "*")
                        if series[i].get {
                            _ = workfcgi_curl_setopt_long(h, CURLOPT_HTTPGET, 1)
                        } else {
                            _ = workfcgi_curl_setopt_slist(h, CURLOPT_HTTPHEADER, headers)
                            _ = workfcgi_curl_setopt_long(h, CURLOPT_POSTFIELDSIZE, series[i].body.count)
                            series[i].body.withUnsafeBufferPointer { b in
                                _ = workfcgi_curl_setopt_pointer(h, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: b.baseAddress))
                            }
                        }
                        _ = workfcgi_curl_setopt_write(h, onBody)
                        _ = workfcgi_curl_setopt_pointer(h, CURLOPT_WRITEDATA, Unmanaged.passUnretained(transfer as AnyObject).toOpaque())
                    }
                    if !sources.isEmpty {
                        _ = workfcgi_curl_setopt_string(h, CURLOPT_INTERFACE, "host!" + sources[source % sources.count])
                        source += 1
                    }
                    running[h] = transfer
                    curl_multi_add_handle(multi, h)
                    issued[i] += 1
                    inFlight[i] += 1
                }
            }
            var active: Int32 = 0
            if events.timeout == 0 {
                events.timeout = -1
                curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &active)
            }
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let h = message.pointee.easy_handle, let transfer = running.removeValue(forKey: h)
                else { continue }
                let code = message.pointee.data.result
                curl_multi_remove_handle(multi, h)
                let done = DispatchTime.now().uptimeNanoseconds - start
                let s = series[transfer.series]
                var status = 0
                _ = workfcgi_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
                let kind: Outcome.Kind
                var requestID: String?
                if code == CURLE_OPERATION_TIMEDOUT {
                    kind = .timeout
                } else if code != CURLE_OK {
                    kind = .connectionError(String(cString: curl_easy_strerror(code)))
                } else if status == s.okStatus {
                    kind = .success
                    // Only async acknowledgements carry an id worth keeping (for the callbacks).
                    if s.okStatus == 202 { requestID = Self.field("request_id", in: transfer.body) }
                } else {
                    kind = .refused(status: status, code: Self.field("code", in: transfer.body), message: Self.field("message", in: transfer.body))
                }
                if kind != .success { errors += 1 }
                let latency = s.pacing.latency(n: transfer.n, sent: transfer.sent, done: done)
                let sentAt = wallStart.addingTimeInterval(Double(s.pacing.intended(transfer.n) ?? transfer.sent) / 1e9)
                results.append(Result(
                    series: transfer.series, outcome: Outcome(kind: kind, micros: latency / 1000, at: Double(done) / 1e9),
                    requestID: requestID, sentAt: sentAt))
                inFlight[transfer.series] -= 1
                idle.append(transfer)
            }
            let after = DispatchTime.now().uptimeNanoseconds - start
            if after - lastProgress > 250_000_000 {
                lastProgress = after
                progress(Progress(elapsed: Double(after) / 1e9, sent: issued.reduce(0, +), errors: errors))
            }
            if series.indices.allSatisfy({ finishedIssuing($0, after) }) && running.isEmpty { break }
            // Wait for a ready socket, curl's next timeout, or the next open-loop send.
            var wait: Int32 = 50
            if events.timeout >= 0 { wait = min(wait, Int32(events.timeout)) }
            for i in series.indices where !finishedIssuing(i, after) {
                if let next = series[i].pacing.intended(issued[i]) {
                    wait = min(wait, Int32(max(0, (Int64(next) - Int64(after)) / 1_000_000)))
                }
            }
            let n = epoll_wait(events.epoll, &ready, Int32(ready.count), wait)
            if n > 0 {
                for e in ready[0..<Int(n)] {
                    var flags: Int32 = 0
                    if e.events & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
                    if e.events & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
                    if e.events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
                    curl_multi_socket_action(multi, e.data.fd, flags, &active)
                }
            } else if events.timeout >= 0 && events.timeout <= Int(wait) {
                events.timeout = -1
                curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &active)
            }
        }
        for transfer in idle { curl_easy_cleanup(transfer.handle) }
        return results
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
