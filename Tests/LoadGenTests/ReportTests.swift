import Foundation
import Testing

@testable import loadgen

/// The HTML report's pure parts: the classes and per-second buckets of the rate charts, the axes' ticks,
/// the run's metadata, and that nothing from outside (server messages, names, the command line) reaches
/// the page unescaped.
@Suite struct ReportTests {
    @Test func everyOutcomeFallsInOneStatusClass() {
        #expect(StatusClass(.success) == .success)
        #expect(StatusClass(.refused(status: 201, code: nil, message: nil)) == .success, "a 2xx the series did not expect is still an answer")
        #expect(StatusClass(.refused(status: 429, code: nil, message: nil)) == .limited)
        #expect(StatusClass(.refused(status: 503, code: "sync_saturated", message: "busy")) == .unavailable)
        #expect(StatusClass(.refused(status: 500, code: nil, message: nil)) == .other)
        #expect(StatusClass(.refused(status: 422, code: "invalid_callback_url", message: nil)) == .other)
        #expect(StatusClass(.timeout) == .other && StatusClass(.connectionError("refused")) == .other)
        #expect(StatusClass.allCases.map(\.label) == ["2xx", "429", "503", "other"])
    }

    @Test func bucketsCountEachOutcomeInTheSecondItEnded() {
        var b = RateBuckets()
        b.add(.success, at: 0.2)
        b.add(.success, at: 0.99)
        b.add(.unavailable, at: 1.0)
        b.add(.limited, at: 3.5)
        b.add(.other, at: -0.1)  // a clock step back: counted in the first second, never lost
        #expect(b.counts == [[2, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
        #expect(b.count(.success) == 2 && b.count(.limited) == 1 && b.count(.unavailable) == 1 && b.count(.other) == 1)
        let perSecond = b.rates(width: 1)
        #expect(perSecond.map(\.at) == [0, 1, 2, 3] && perSecond[0].perSecond == [2, 0, 0, 1])
        // Two seconds a bucket: the mean over them.
        let two = b.rates(width: 2)
        #expect(two.map(\.at) == [0, 2] && two[0].perSecond == [1, 0, 0.5, 0.5] && two[1].perSecond == [0, 0.5, 0, 0])
        // A short last bucket is averaged over the seconds it has, not the full width.
        let three = b.rates(width: 3)
        #expect(three.map(\.at) == [0, 3] && three[1].perSecond == [0, 1, 0, 0])
        #expect(RateBuckets().rates(width: 5).isEmpty)
    }

    @Test func bucketWidthKeepsAboutAHundredTwentyPoints() {
        #expect(RateBuckets.width(forSeconds: 0) == 1 && RateBuckets.width(forSeconds: 15) == 1 && RateBuckets.width(forSeconds: 120) == 1)
        #expect(RateBuckets.width(forSeconds: 121) == 2 && RateBuckets.width(forSeconds: 3600) == 30)
    }

    @Test func ticksAreRoundNumbersThatCoverTheRange() {
        #expect(Axis.ticks(15) == [0, 5, 10, 15] && Axis.ticks(16) == [0, 5, 10, 15, 20])
        #expect(Axis.ticks(60) == [0, 10, 20, 30, 40, 50, 60])
        #expect(Axis.ticks(0.7).map { Axis.label($0) } == ["0", "0.2", "0.4", "0.6", "0.8"])
        #expect(Axis.ticks(0) == [0, 1] && Axis.step(.infinity) == 1)
        #expect(Axis.ticks(372, target: 4).last! >= 372 && Axis.ticks(372, target: 4) == [0, 100, 200, 300, 400])
        #expect(Axis.label(10, unit: "s") == "10 s" && Axis.label(0.5) == "0.5" && Axis.label(0.25) == "0.25" && Axis.label(3) == "3")
    }

    @Test func runInfoSaysWhenInUTCAndTheCommandAsAShellTakesIt() {
        let info = RunInfo(
            started: Date(timeIntervalSince1970: 1_796_212_800.7), target: "http://127.0.0.1:8080", version: "0.9.0 (abc1234)",
            arguments: ["--mode", "mixed", "--text", "it's <b>", "--duration", "15s"], effective: "mixed")
        #expect(info.startedText == "2026-12-02T12:00:00Z")
        #expect(info.commandLine == #"loadgen --mode mixed --text 'it'\''s <b>' --duration 15s"#)
        #expect(RunInfo(started: Date(), target: "", version: "", arguments: [""], effective: "").commandLine == "loadgen ''")
    }

    static func hostileRun() -> (rows: [SeriesStats], info: RunInfo) {
        var sync = SeriesStats(name: "sync response")
        for i in 0..<40 { sync.record(Outcome(kind: .success, micros: UInt64(1000 + i * 100), at: Double(i) / 8)) }
        for i in 0..<20 {
            sync.record(Outcome(kind: .refused(status: 503, code: "sync_saturated", message: "<script>alert(1)</script>"), micros: 2_000_000, at: 2 + Double(i) / 10))
        }
        sync.record(Outcome(kind: .refused(status: 429, code: "<img src=x onerror=alert(2)>", message: "\"quoted\" & more"), micros: 1000, at: 4.5))
        sync.record(Outcome(kind: .connectionError("<iframe>"), micros: 0, at: 4.6))
        sync.seconds = 5
        let info = RunInfo(
            started: Date(timeIntervalSince1970: 1_796_212_800), target: "http://h/<svg onload=alert(3)>", version: "v<1>",
            arguments: ["--body", "</dd><script>alert(4)</script>"], effective: "sync, body {\"text\": \"<b>\"}")
        return ([sync], info)
    }

    @Test func nothingFromOutsideReachesThePageUnescaped() {
        let (rows, info) = Self.hostileRun()
        let page = Report.html(rows, callbacks: CallbackSummary(expected: 0), title: "loadgen: <title> & \"x\"", info: info)
        for raw in ["<script", "<img", "<iframe", "<svg onload", "<title> &", "<b>", "<1>"] {
            #expect(!page.contains(raw), "unescaped \(raw)")
        }
        #expect(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && page.contains("&lt;img src=x onerror=alert(2)&gt;"))
        #expect(page.contains("&lt;/dd&gt;&lt;script&gt;alert(4)") && page.contains("http://h/&lt;svg onload=alert(3)&gt;"))
        #expect(page.contains("&quot;quoted&quot; &amp; more"))
    }

    @Test func thePageCarriesTheRunsMetadataAndRatesByClass() {
        let (rows, info) = Self.hostileRun()
        let page = Report.html(rows, callbacks: CallbackSummary(expected: 0), title: "t", info: info)
        #expect(page.contains("<dt>date (UTC)</dt><dd>2026-12-02T12:00:00Z</dd>") && page.contains("<dt>loadgen</dt><dd>v&lt;1&gt;</dd>"))
        #expect(page.contains("<dt>command</dt><dd>loadgen --body"))
        // The table scrolls inside its box instead of being cut off.
        #expect(page.contains("<div class=scroll><table id=figures>") && page.contains(".scroll{overflow-x:auto"))
        // One line per class that occurred, with its count in the legend; none for a class that did not.
        let chart = Report.rateChart(rows[0], id: "rates-0", seconds: rows[0].seconds)
        for (c, n) in [("2xx", 40), ("429", 1), ("503", 20), ("other", 1)] {
            #expect(chart.contains("class=\"rate-\(c)\"") && chart.contains(">\(c) (\(n))</text>"), "\(c)")
        }
        var onlyOK = SeriesStats(name: "async ack")
        onlyOK.record(Outcome(kind: .success, micros: 1000, at: 0.5))
        let single = Report.rateChart(onlyOK, id: "r", seconds: 1)
        #expect(single.contains("rate-2xx") && !single.contains("rate-503") && !single.contains("rate-other"))
        #expect(Report.rateChart(SeriesStats(name: "empty"), id: "e", seconds: 3).isEmpty)
        // The 503s came at 20 a second from 2 s to 4 s: the chart's peak tick covers it.
        #expect(rows[0].rates.rates(width: 1).map { $0.perSecond[StatusClass.unavailable.rawValue] } == [0, 0, 10, 10, 0])
    }

    @Test func timeAxisLabelsItsTicks() {
        let axis = Report.timeAxis(maxT: 15, x: { 60 + $0 * 50 }, top: 0, bottom: 300, width: 900)
        for label in ["0 s", "5 s", "10 s", "15 s"] { #expect(axis.contains(">\(label)</text>"), "\(label)") }
        #expect(!Report.timeAxis(maxT: 16, x: { $0 }, top: 0, bottom: 300, width: 900).contains(">20 s<"), "no tick past the run's end")
        #expect(axis.contains("seconds into the run"))
        // The scatter has them too.
        let (rows, _) = Self.hostileRun()
        #expect(Report.scatter(rows, id: "answers", title: "t").contains(">4 s</text>"))
        // Given the run's end, the scatter's axis reaches it like the rate charts' (one time axis on the page).
        #expect(!Report.scatter(rows, id: "answers", title: "t").contains(">30 s</text>"))
        #expect(Report.scatter(rows, id: "answers", title: "t", until: 30).contains(">30 s</text>"))
    }

    @Test func theJSONCarriesTheRunAndTheCountsPerSecond() throws {
        let (rows, info) = Self.hostileRun()
        let data = try Report.json(rows, callbacks: CallbackSummary(expected: 0), mode: "sync", pacing: "p", info: info)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let run = try #require(object["run"] as? [String: Any])
        #expect(run["started"] as? String == "2026-12-02T12:00:00Z" && run["version"] as? String == "v<1>")
        #expect(run["arguments"] as? [String] == ["--body", "</dd><script>alert(4)</script>"])
        let perSecond = try #require((object["series"] as? [[String: Any]])?.first?["per_second"] as? [String: [Int]])
        #expect(perSecond["503"] == [0, 0, 10, 10, 0] && perSecond["2xx"] == [8, 8, 8, 8, 8] && perSecond["other"] == [0, 0, 0, 0, 1])
    }
}
