import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The trust boundary through the real nginx: operator endpoints by any spelling, with nginx's allow-list and
/// without it (workfcgi holds the line itself), DNS rebinding, cross-site requests, a callback aimed at the
/// service's own front door, and half-sent requests from one address.
@Suite(.serialized, .timeLimit(.minutes(3))) struct TrustBoundaryTests {
    static let id = "0194d1a2-7b3c-7def-8123-456789abcdef"

    /// What a non-operator tries; none may succeed.
    static let attempts: [(String, String)] = [
        ("GET", "/requests"), ("GET", "/requests/"), ("GET", "/requests/?limit=500"), ("GET", "/requests//"), ("HEAD", "/requests/"),
        ("GET", "/metrics"), ("GET", "/metrics/"), ("GET", "/Metrics"), ("GET", "/metrics;x"), ("GET", "/ui"), ("GET", "/ui/"),
        ("GET", "/%75i"), ("GET", "/ui/requests/\(id)"), ("GET", "/./requests"), ("GET", "/x/../requests"),
        ("POST", "/requests/\(id)/redeliver"), ("POST", "/requests/\(id)/redeliver/"), ("POST", "/requests/\(id)/redeliver//"),
        ("POST", "/requests/\(id)/redeliver/."), ("POST", "/requests/\(id)/redeliver%2F"), ("POST", "/requests/\(id)/REDELIVER"),
        ("POST", "/requests/\(id)//redeliver"), ("POST", "/ui/requests/\(id)/redeliver"),
    ]

    @Test(arguments: [nil, "allow all;\n"] as [String?])
    func noSpellingReachesAnOperatorEndpoint(operators: String?) async throws {
        let stack = try Stack(operators: operators)
        try stack.start()
        // A real job, so that the redeliver attempts name one that exists.
        let receiver = try CallbackReceiver()
        let callbackPort = try await receiver.start()
        defer { receiver.stopNow() }
        let job = try stack.submit(#"{"text": "x", "callback_url": "http://127.0.0.1:\#(callbackPort)/ok"}"#)
        try stack.waitForStatus(job, "completed")
        for (method, path) in Self.attempts + Self.attempts.map({ ($0.0, $0.1.replacingOccurrences(of: Self.id, with: job)) }) {
            let answer = try #require(RawHTTP.send(method, path, port: stack.port, from: "127.0.0.2"))
            #expect(!(200..<400).contains(answer.status), "\(method) \(path) from 127.0.0.2: \(answer.status) \(answer.body.prefix(200))")
            #expect(answer.head.lowercased().contains("content-type: application/json"), "\(method) \(path): \(answer.head)")
        }
        #expect(await receiver.wait(timeout: 1) { $0.count > 1 } == false, "nothing was redelivered")
        // What stays open: a client follows its own job.
        #expect(RawHTTP.send("GET", "/requests/\(job)", port: stack.port, from: "127.0.0.2")?.status == 200)
        if operators != nil {
            // nginx let it through; workfcgi refused it, saying which setting decides.
            let listing = try #require(RawHTTP.send("GET", "/requests", port: stack.port, from: "127.0.0.2"))
            #expect(listing.status == 403 && listing.body.contains("WORKFCGI_OPERATOR_ADDRESSES"), "\(listing.body)")
        }
        // /sync has one spelling; another one is no endpoint, and never computes on the api pool's threads.
        let slashed = try #require(
            RawHTTP.send("POST", "/sync/", port: stack.port, headers: ["Content-Type": "application/json"], body: #"{"text": "x"}"#))
        #expect(slashed.status == 404, "\(slashed.body)")
    }

    @Test func reboundNamesAndCrossSitePagesAreRefused() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        defer { receiver.stopNow() }
        let job = try stack.submit(#"{"text": "x", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(job, "completed")
        for path in ["/ui", "/requests", "/metrics"] {
            let rebound = try #require(RawHTTP.send("GET", path, port: stack.port, headers: ["Host": "evil.example:\(stack.port)"]))
            #expect(rebound.status == 403 && rebound.body.contains("WORKFCGI_OPERATOR_HOSTS"), "\(path): \(rebound.body)")
        }
        #expect(RawHTTP.send("GET", "/ui", port: stack.port, headers: ["Host": "localhost:\(stack.port)"])?.status == 200)
        let csrf = try #require(
            RawHTTP.send(
                "POST", "/requests/\(job)/redeliver", port: stack.port,
                headers: ["Origin": "http://evil.example", "Content-Type": "text/plain"], body: "x"))
        #expect(csrf.status == 403, "\(csrf.body)")
        let form = try #require(
            RawHTTP.send(
                "POST", "/ui/requests/\(job)/redeliver", port: stack.port,
                headers: ["Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"], body: "token=x"))
        #expect(form.status == 403)
        #expect(await receiver.wait(timeout: 1) { $0.count > 1 } == false, "nothing was redelivered")
        // The operator's own tools still work.
        #expect(RawHTTP.send("POST", "/requests/\(job)/redeliver", port: stack.port)?.status == 202)
    }

    /// With loopback callbacks allowed, a client aims its callback at the service's own redeliver endpoint:
    /// deliveryd's POST comes from 127.0.0.1, an operator address, but carries deliveryd's signature.
    @Test func aCallbackCannotCallTheServiceItself() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        defer { receiver.stopNow() }
        let victim = try stack.submit(#"{"text": "x", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(victim, "completed")
        let body = #"{"text": "y", "callback_url": "http://127.0.0.1:\#(stack.port)/requests/\#(victim)/redeliver"}"#
        let deputy = try #require(try HTTPClient(sourceAddress: "127.0.0.2").postJSON(stack.baseURL + "/async", body).json?["request_id"] as? String)
        try stack.waitFor("the deputy's callback to be refused") { (try? stack.attemptStatuses(deputy))?.first == 403 }
        #expect(try stack.attemptStatuses(victim).count == 1, "the victim's job was not redelivered")
        #expect(await receiver.wait(timeout: 1) { $0.count > 1 } == false)
    }

    /// Half-sent requests from one address must not take nginx's connections from everyone else.
    @Test func halfSentRequestsFromOneAddressLeaveRoomForOthers() throws {
        let stack = try Stack()
        try stack.start()
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let wanted = rlim_t(16_384)
        if limit.rlim_cur < wanted {
            var raised = limit
            raised.rlim_cur = min(wanted, max(limit.rlim_max, wanted))
            raised.rlim_max = max(limit.rlim_max, raised.rlim_cur)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        }
        defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        // Twice the 4,096 connections nginx allowed in all before (measured: 4,300 did not always exhaust them,
        // 8,000 reset the other client's connection).
        for _ in 0..<8_000 {
            let fd = RawHTTP.connect(port: stack.port, from: "127.0.0.2")
            guard fd >= 0 else { break }
            RawHTTP.write(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(fd)
        }
        #expect(held.count == 8_000, "opened \(held.count)")
        usleep(300_000)
        let answer = RawHTTP.send("GET", "/healthz", port: stack.port)
        #expect(answer?.status == 200, "another client while 8,000 requests hang: \(String(describing: answer?.status))")
    }
}
