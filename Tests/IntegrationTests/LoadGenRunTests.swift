import Foundation
import Harness
import Testing

/// loadgen against the real stack: what it reports matches the server's own records, callbacks are
/// verified, its exit status gates, and its HTML report renders in headless Chromium with its charts.
@Suite(.serialized) struct LoadGenRunTests {
    static var loadgen: String { Stack.binDirectory.appendingPathComponent("loadgen").path }

    @Test func countsMatchTheServersRecordsAndTheReportRenders() throws {
        let stack = try Stack(settings: ["WORKFCGI_CLIENT_BACKLOG_LIMIT": "100000"], rate: "100000r/s", burst: 100_000)
        try stack.start()
        defer { stack.stopAll() }
        let json = stack.directory.appendingPathComponent("figures.json").path
        let html = stack.directory.appendingPathComponent("report.html").path
        let run = try Stack.run(Self.loadgen, [
            "--url", stack.baseURL, "--mode", "mixed", "--requests", "40", "--concurrency", "6", "--op", "text",
            "--source-addresses", "127.0.0.20-127.0.0.23", "--receiver-port", String(try Stack.freePort()), "--secret", Stack.secret,
            "--json", json, "--report", html, "--callback-timeout", "60", "--expect", "callbacks=all,async.ok=40,sync.ok=40", "--quiet",
        ])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("In short:"), "the one-line conclusion")
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let series = (figures["series"] as? [[String: Any]]) ?? []
        func ok(_ name: String) -> Int? { series.first { $0["series"] as? String == name }?["ok"] as? Int }
        let callbacks = figures["callbacks"] as? [String: Any] ?? [:]
        #expect(callbacks["received"] as? Int == 40 && callbacks["bad_signatures"] as? Int == 0, "\(callbacks)")
        #expect(callbacks["signatures_checked"] as? Bool == true)

        // The server's own records: as many sync results and async jobs as loadgen counted successes.
        let client = HTTPClient()
        func stored(_ mode: String) throws -> Int {
            ((try client.get(stack.baseURL + "/requests?mode=\(mode)&limit=500").json?["requests"]) as? [Any])?.count ?? -1
        }
        #expect(try stored("sync") == ok("sync response"))
        #expect(try stored("async") == ok("async ack"))
        // Connections came from the addresses given (nginx flushes its access log every second).
        func clients() -> Set<String> {
            let access = (try? String(contentsOfFile: stack.runDirectory + "/nginx-access.log", encoding: .utf8)) ?? ""
            return Set(access.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        }
        try stack.waitFor("the four client addresses in nginx's access log", timeout: 5) {
            clients().isSuperset(of: ["127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"])
        }

        // The report in a real browser: both answer series and the callbacks are drawn.
        let dom = try Stack.run("/usr/bin/env", ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", "file://" + html])
        #expect(dom.output.contains("id=\"answers\"") && dom.output.contains("id=\"callbacks\"") && dom.output.contains("id=\"percentiles\""))
        #expect(dom.output.components(separatedBy: "<circle").count > 80, "a point per answer and per callback")
        #expect(dom.output.contains("<polyline") && !dom.output.contains("<script"))
        // Issue 20 item 14: answers and refusals per second per series, the run's metadata, the table as HTML.
        #expect(dom.output.contains("id=\"rates-0\"") && dom.output.contains("class=\"rate-2xx\""), "rates over time")
        #expect(dom.output.contains("<dl id=\"run\">") && dom.output.contains(stack.baseURL) && dom.output.contains("--source-addresses"))
        #expect(dom.output.contains("<table id=\"figures\">"))
        #expect((figures["run"] as? [String: Any])?["version"] as? String != nil, "the build's version in the JSON too")

        // WORKFCGI_REPORT_SCREENSHOT=path: a longer storm's report as a PNG at 1,400 px (docs/loadgen-report.png).
        if let png = ProcessInfo.processInfo.environment["WORKFCGI_REPORT_SCREENSHOT"] {
            let long = stack.directory.appendingPathComponent("long.html").path
            _ = try Stack.run(Self.loadgen, [
                "--url", stack.baseURL, "--mode", "mixed", "--duration", "12s", "--concurrency", "24", "--op", "compute", "--complexity", "2",
                "--async-rate", "20", "--source-addresses", "127.0.0.20-127.0.0.43", "--receiver-port", String(try Stack.freePort()),
                "--secret", Stack.secret, "--report", long, "--callback-timeout", "60", "--quiet",
            ])
            _ = try Stack.run("/usr/bin/env", ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--window-size=1400,2300", "--screenshot=" + png, "file://" + long])
        }
    }

    @Test func itFailsWhenNothingSucceedsOrAnExpectationDoesNot() throws {
        let dead = try Stack.run(Self.loadgen, ["--url", "http://127.0.0.1:\(try Stack.freePort())", "--mode", "sync", "--requests", "5", "--quiet"])
        #expect(dead.status == 1 && dead.output.contains("no sync response succeeded"), "\(dead.output)")
        #expect(dead.output.contains("connection errors"), "says why")
        #expect(dead.output.contains("no sync caller got a result"), "and the conclusion does not pretend otherwise")

        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        defer { stack.stopAll() }
        let strict = try Stack.run(Self.loadgen, [
            "--url", stack.baseURL, "--mode", "sync", "--requests", "10", "--concurrency", "2", "--op", "text", "--expect", "sync.p50<0.001ms", "--quiet",
        ])
        #expect(strict.status == 1 && strict.output.contains("expectations failed") && strict.output.contains("sync.p50<0.001ms"), "\(strict.output)")
        // Sync succeeds but every async job is refused (callbacks to this machine closed, as installed): exit 1, saying how to open them.
        let closed = try Stack(settings: ["WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "false"])
        try closed.start([.workfcgi, .nginx])
        defer { closed.stopAll() }
        let refused = try Stack.run(Self.loadgen, [
            "--url", closed.baseURL, "--mode", "both", "--requests", "5", "--concurrency", "2", "--op", "text", "--receiver-port", "0", "--quiet",
        ])
        #expect(refused.status == 1, "\(refused.output)")
        #expect(refused.output.contains("no async ack succeeded (5 of 5 × 422 invalid_callback_url)")
            && refused.output.contains("WORKFCGI_CALLBACK_ALLOW_CIDRS=127.0.0.1/32"), "\(refused.output)")
        let bad = try Stack.run(Self.loadgen, ["--expect", "p99<5"])
        #expect(bad.status == 64, "a malformed --expect is a usage error: \(bad.output)")
    }
}
