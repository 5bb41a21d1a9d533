import Foundation
import Testing

@testable import loadgen

@Suite struct PacingTests {
    @Test func openLoopSendsOnScheduleWhateverTheServerDoes() {
        let pacing = Pacing.open(rate: 100)
        #expect(pacing.intended(0) == 0 && pacing.intended(1) == 10_000_000 && pacing.intended(250) == 2_500_000_000)
        // 35 ms in: requests 0, 1, 2, 3 are due; 1 already went out.
        #expect(pacing.due(issued: 1, inFlight: 1, now: 35_000_000) == 3)
        // However many are still unanswered (a stalled server), the schedule does not wait...
        #expect(pacing.due(issued: 4, inFlight: 4, now: 95_000_000) == 6)
        // ...except past the in-flight cap, where the sender falls behind (and latency still counts from the schedule).
        #expect(pacing.due(issued: 4, inFlight: 4, now: 95_000_000, maxInFlight: 5) == 1)
    }

    @Test func closedLoopKeepsItsConcurrency() {
        let pacing = Pacing.closed(concurrency: 8)
        #expect(pacing.intended(5) == nil)
        #expect(pacing.due(issued: 100, inFlight: 3, now: 1) == 5)
        #expect(pacing.due(issued: 100, inFlight: 8, now: 1) == 0)
    }

    /// wrk2's point, on a simulated server that answers in 1 ms but stalls for one second: measured from
    /// the intended send times (open loop) the stall shows in the percentiles; measured the closed-loop way
    /// (from when a blocked client finally sent) it is one slow sample among many fast ones.
    @Test func coordinatedOmissionIsCorrectedAgainstAStalledServer() {
        let stall = (start: 500_000_000 as UInt64, end: 1_500_000_000 as UInt64)
        func serve(at t: UInt64) -> UInt64 { (t >= stall.start && t < stall.end ? stall.end : t) + 1_000_000 }
        // Open loop: 100/s for 2 s on one connection; each request starts when due or when the previous ends.
        let open = Pacing.open(rate: 100)
        var corrected = SeriesStats(name: "open")
        var free: UInt64 = 0
        for n in 0..<200 {
            let sent = max(open.intended(n)!, free)
            let done = serve(at: sent)
            free = done
            corrected.record(Outcome(kind: .success, micros: open.latency(n: n, sent: sent, done: done) / 1000, at: Double(done) / 1e9))
        }
        // Closed loop, one client, the same 2 s: the next request goes out when the last returns.
        let closed = Pacing.closed(concurrency: 1)
        var naive = SeriesStats(name: "closed")
        var t: UInt64 = 0
        var n = 0
        while t < 2_000_000_000 {
            let done = serve(at: t)
            naive.record(Outcome(kind: .success, micros: closed.latency(n: n, sent: t, done: done) / 1000, at: Double(done) / 1e9))
            t = done
            n += 1
        }
        #expect(corrected.ms(99) > 900, "p99 \(corrected.ms(99)) ms: the stall shows")
        #expect(corrected.ms(50) > 100, "half the requests were due during the stall: p50 \(corrected.ms(50)) ms")
        #expect(naive.ms(99) < 2, "closed loop hides it: p99 \(naive.ms(99)) ms")
        #expect(naive.ms(100) > 900, "as a single slow sample")
    }
}

@Suite struct StatsTests {
    @Test func successesAndRefusalsAreKeptApart() {
        var s = SeriesStats(name: "sync response")
        for ms: UInt64 in [10, 20, 30, 40] { s.record(Outcome(kind: .success, micros: ms * 1000, at: 0)) }
        for _ in 0..<3 {
            s.record(Outcome(kind: .refused(status: 503, code: "sync_saturated", message: "all 10 sync slots are busy"), micros: 2_000_000, at: 0))
        }
        s.record(Outcome(kind: .refused(status: 422, code: "invalid_callback_url", message: "port 1 is not allowed"), micros: 1000, at: 0))
        s.record(Outcome(kind: .timeout, micros: 0, at: 0))
        s.record(Outcome(kind: .connectionError("Couldn't connect to server"), micros: 0, at: 0))
        s.seconds = 2
        #expect(s.sent == 10 && s.ok == 4 && s.errors == 6 && s.timeouts == 1 && s.connectionErrors == 1)
        #expect(s.byStatus == [503: 3, 422: 1])
        #expect(s.byCode["sync_saturated"]?.count == 3 && s.byCode["invalid_callback_url"]?.message == "port 1 is not allowed")
        #expect(s.ms(100) < 41 && s.ms(50) >= 19.9, "the 2 s refusals are not in the success percentiles")
        #expect(s.ms(50, refusals: true) > 1900)
        #expect(s.goodput == 2 && s.throughput == 5)
        let spectrum = s.spectrum
        #expect(spectrum.first?.percentile == 0 && spectrum.last?.percentile == 100 && spectrum.count > 5)
    }
}

@Suite struct ExpectationTests {
    @Test func parsesAndJudges() throws {
        let terms = try Expectation.parse("async.ack.p99<50ms, callbacks=all, sync.503>0, sync.p50<=2s, async.callback.max<1s")
        #expect(terms.map(\.series) == ["async", "callbacks", "sync", "sync", "callbacks"])
        #expect(terms[0].value == 50 && terms[3].value == 2000 && terms[2].figure == "503")
        var ack = SeriesStats(name: "async ack")
        ack.record(Outcome(kind: .success, micros: 30_000, at: 0))
        var sync = SeriesStats(name: "sync response")
        sync.record(Outcome(kind: .refused(status: 503, code: nil, message: nil), micros: 1, at: 0))
        #expect(terms[0].failure(ack, callbacks: (5, 5)) == nil)
        #expect(terms[1].failure(nil, callbacks: (5, 5)) == nil)
        #expect(terms[1].failure(nil, callbacks: (4, 5)) == "callbacks=all: measured 4")
        #expect(terms[2].failure(sync, callbacks: (0, 0)) == nil)
        #expect(terms[4].failure(nil, callbacks: (0, 0)) != nil, "no such figure in this run fails")
        #expect(throws: Expectation.ParseError.self) { try Expectation.parse("p99<5") }
        #expect(throws: Expectation.ParseError.self) { try Expectation.parse("sync.p99<fast") }
    }

    @Test func sourceAddressesAreLoopbackOnly() {
        #expect(LoadGen.addresses("127.0.0.10-127.0.0.12") == ["127.0.0.10", "127.0.0.11", "127.0.0.12"])
        #expect(LoadGen.addresses("127.0.0.2,127.0.1.3")?.count == 2)
        #expect(LoadGen.addresses("10.0.0.1") == nil && LoadGen.addresses("127.0.0.9-127.0.0.3") == nil)
        #expect(LoadGen.seconds("30s") == 30 && LoadGen.seconds("2m") == 120 && LoadGen.seconds("500ms") == 0.5 && LoadGen.seconds("x") == nil)
    }

    @Test func signaturesVerifyTheStandardWebhooksTestVector() throws {
        // The Standard Webhooks specification's example.
        let check = try #require(SignatureCheck(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let body = Array(#"{"test": 2432232314}"#.utf8)
        #expect(check.verifies(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330", body: body,
            header: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="))
        #expect(!check.verifies(id: "msg_other", timestamp: "1614265330", body: body, header: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="))
    }
}

@Suite struct ResponseParserTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func contentLengthAndChunkedAnswersEndWhereTheySay() throws {
        let plain = bytes("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello")
        let p = try #require(Engine.parse(plain, closed: false))
        #expect(p.status == 202 && p.end == plain.count && p.keepAlive && Array(plain[p.bodyStart..<p.end]) == bytes("hello"))
        #expect(Engine.parse(Array(plain.dropLast()), closed: false) == nil, "one byte short: incomplete")

        let chunked = bytes("HTTP/1.1 503 Service Unavailable\r\nTRANSFER-ENCODING: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n")
        let c = try #require(Engine.parse(chunked + bytes("HTTP/1.1 200 OK\r\n"), closed: false))
        #expect(c.status == 503 && c.end == chunked.count && !c.keepAlive, "ends at the last chunk, not at what follows")
        #expect(Engine.parse(Array(chunked.dropLast(2)), closed: false) == nil)

        let unbounded = bytes("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close")
        #expect(Engine.parse(unbounded, closed: false) == nil)
        #expect(Engine.parse(unbounded, closed: true)?.end == unbounded.count)
        #expect(Engine.parse(bytes("garbage that is not http\r\n\r\n"), closed: false)?.status == 0)
    }

    @Test func errorFieldsAreFoundWithoutAFullParse() {
        let body = Array(#"{"error":{"code":"sync_saturated","message":"all 10 \"slots\" busy"}}"#.utf8)
        #expect(Engine.field("code", in: body) == "sync_saturated")
        #expect(Engine.field("message", in: body) == #"all 10 "slots" busy"#)
        #expect(Engine.field("request_id", in: body) == nil)
    }
}

/// The traps of issue 20: figures of nothing, a secret sitting beside the database, a series that got nothing.
@Suite struct EmptyRunTests {
    static func refusedOnly(_ name: String, code: String, status: Int = 422) -> SeriesStats {
        var s = SeriesStats(name: name)
        for _ in 0..<3 { s.record(Outcome(kind: .refused(status: status, code: code, message: "refused"), micros: 1000, at: 0)) }
        return s
    }

    @Test func latenciesOfNoSuccessesAreNeitherZeroNorMet() throws {
        let ack = Self.refusedOnly("async ack", code: "invalid_callback_url")
        let table = Report.table([ack], callbacks: CallbackSummary(expected: 0))
        let row = table.split(separator: "\n")[1]
        #expect(!row.contains("0.0") && row.hasSuffix("-"), "\(row)")
        let terms = try Expectation.parse("async.ack.p99<50ms,callbacks=all")
        #expect(terms[0].failure(ack, callbacks: (0, 0)) == "async.ack.p99<50ms: no successes to measure")
        #expect(terms[1].failure(nil, callbacks: (0, 0)) == "callbacks=all: no job was accepted")
        let json = try JSONSerialization.jsonObject(with: Report.json([ack], callbacks: CallbackSummary(expected: 0), mode: "async", pacing: ""))
        let series = ((json as? [String: Any])?["series"] as? [[String: Any]])?.first
        #expect(series?["latency_ms"] is NSNull && series?["refusal_latency_ms"] is [String: Any])
    }

    @Test func aSeriesWithNoSuccessSaysWhyAndHowToFixIt() {
        let refused = LoadGen.noSuccess(Self.refusedOnly("async ack", code: "invalid_callback_url"), url: "http://127.0.0.1:8080")
        #expect(refused.hasPrefix("no async ack succeeded (3 of 3 × 422 invalid_callback_url): the service refuses callbacks"))
        #expect(refused.contains("WORKFCGI_CALLBACK_ALLOW_CIDRS=127.0.0.1/32") && refused.contains("/etc/workfcgi/workfcgi.env"))
        var down = SeriesStats(name: "sync response")
        down.record(Outcome(kind: .connectionError("Connection refused"), micros: 0, at: 0))
        #expect(LoadGen.noSuccess(down, url: "http://x:1") == "no sync response succeeded (1 connection errors: is the stack up at http://x:1?)")
    }

    @Test func theSecretFileBesideTheDatabaseIsFound() throws {
        let folder = NSTemporaryDirectory() + "loadgen-secret-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        try (secret + "\n").write(toFile: folder + "/webhook-secret", atomically: true, encoding: .utf8)
        let found = WebhookSecretSource.find(option: nil, environment: ["WORKFCGI_DB_PATH": folder + "/workfcgi.db"])
        #expect(found.summary == "checking callback signatures with the secret from \(folder)/webhook-secret")
        #expect(found.check != nil)
        let none = WebhookSecretSource.find(option: nil, environment: ["WORKFCGI_RUN_DIR": folder + "/nothing"])
        #expect(none.check == nil && none.summary.contains("\(folder)/nothing/webhook-secret"), "\(none.summary)")
        #expect(WebhookSecretSource.find(option: secret, environment: [:]).summary.hasSuffix("from --secret"))
        #expect(WebhookSecretSource.find(option: nil, environment: ["WORKFCGI_WEBHOOK_SECRET": secret]).summary.hasSuffix("$WORKFCGI_WEBHOOK_SECRET"))
        // A checkout linked to an installed service: its secret is in /var/lib/NAME.
        try FileManager.default.createDirectory(atPath: folder + "/run", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder + "/run/api.sock", withDestinationPath: "/run/svc/api.sock")
        #expect(WebhookSecretSource.candidates(["WORKFCGI_RUN_DIR": folder + "/run"]) == ["/var/lib/svc/webhook-secret", folder + "/run/webhook-secret"])
    }
}

/// Issue 20 item 14: the report's rates over time, its axes and its metadata, rendered without I/O.
@Suite struct ReportRenderingTests {
    @Test func outcomesAreCountedPerSecondByStatusClass() {
        var s = SeriesStats(name: "sync response")
        s.record(Outcome(kind: .success, micros: 1000, at: 0.2))
        s.record(Outcome(kind: .success, micros: 1000, at: 0.9))
        s.record(Outcome(kind: .refused(status: 429, code: "rate_limited", message: nil), micros: 1000, at: 1.5))
        s.record(Outcome(kind: .refused(status: 503, code: "sync_saturated", message: nil), micros: 1000, at: 2.1))
        s.record(Outcome(kind: .refused(status: 422, code: "out_of_range", message: nil), micros: 1000, at: 2.2))
        s.record(Outcome(kind: .timeout, micros: 0, at: 3.0))
        #expect(s.rates.counts == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
        let two = s.rates.rates(width: 2)
        #expect(two.map(\.at) == [0, 2] && two[0].perSecond == [1, 0.5, 0, 0] && two[1].perSecond == [0, 0, 0.5, 1])
        #expect(RateBuckets.width(forSeconds: 15) == 1 && RateBuckets.width(forSeconds: 600) == 5)
    }

    @Test func axesTickAtRoundNumbers() {
        #expect(Axis.ticks(15) == [0, 5, 10, 15] && Axis.ticks(17) == [0, 5, 10, 15, 20])
        #expect(Axis.ticks(60) == [0, 10, 20, 30, 40, 50, 60])
        #expect(Axis.ticks(0.9, target: 4) == [0, 0.5, 1] && Axis.ticks(130, target: 4) == [0, 50, 100, 150])
        #expect(Axis.label(10, unit: "s") == "10 s" && Axis.label(0.5) == "0.5")
    }

    @Test func theReportCarriesTheRunAndItsRatesAndATableThatIsNotCutOff() {
        var sync = SeriesStats(name: "sync response")
        for i in 0..<30 { sync.record(Outcome(kind: i % 3 == 0 ? .success : .refused(status: 503, code: "sync_saturated", message: "busy"), micros: 2000, at: Double(i) / 2)) }
        sync.seconds = 15
        let info = RunInfo(
            started: Date(timeIntervalSince1970: 1_796_200_000), target: "http://127.0.0.1:8080", version: "0.3.0 (abc123)",
            arguments: ["--mode", "sync", "--body", #"{"a": 1}"#], effective: "sync, closed loop")
        #expect(info.startedText == "2026-12-02T08:26:40Z")
        #expect(info.commandLine == #"loadgen --mode sync --body '{"a": 1}'"#)
        let secret = RunInfo(started: Date(), target: "", version: "", arguments: ["--secret", "whsec_x", "--secret=whsec_y"], effective: "")
        #expect(secret.commandLine == "loadgen --secret '(masked)' '--secret=(masked)'", "a report never carries the secret")
        let html = Report.html([sync], callbacks: CallbackSummary(expected: 0), title: "t", info: info)
        for text in ["2026-12-02T08:26:40Z", "http://127.0.0.1:8080", "0.3.0 (abc123)", "loadgen --mode sync --body '{&quot;a&quot;: 1}'", "id=figures", "overflow-x:auto"] {
            #expect(html.contains(text), "\(text)")
        }
        #expect(html.contains("class=\"rate-2xx\"") && html.contains("class=\"rate-503\"") && !html.contains("class=\"rate-429\""),
            "a line per class present in the run")
        #expect(html.contains(">10 s</text>") && html.contains(">15 s</text>"), "labelled ticks on the time axis")
        #expect(html.contains("2xx (10)") && html.contains("503 (20)"))
        #expect(!html.contains("<pre>"), "the table is an HTML table, not a preformatted block cut at the page's width")
    }
}
