import FastCGI
import JSON
import Store
import Testing
import WorkEngine

@testable import API

/// The pure parts of "what is happening now" and "what happened": the in-flight table, the per-minute ring,
/// the slow log's parameter shapes, and the charts' axes.
@Suite struct ActivityTests {
    @Test func theInFlightTableIsBoundedAndListsOldestFirst() {
        var table = SyncInFlight(capacity: 2)
        let a = table.start(.init(requestID: "b", op: "hash", handler: nil, startedAt: 200))
        let b = table.start(.init(requestID: "a", op: "handler", handler: "checksum", startedAt: 100))
        #expect(a != nil && b != nil)
        #expect(table.start(.init(requestID: "c", op: "hash", handler: nil, startedAt: 300)) == nil, "never past its capacity")
        #expect(table.running.map(\.requestID) == ["a", "b"])
        table.finish(b)
        #expect(table.running.map(\.requestID) == ["b"])
        table.finish(nil)
        #expect(table.start(.init(requestID: "d", op: "text", handler: nil, startedAt: 400)) != nil, "a finished entry frees its place")
    }

    @Test func minuteCountsKeepTheLastHourAndForgetOlderMinutes() {
        var counts = MinuteCounts<String>()
        let t0: Int64 = 1_800_000_000_000  // a minute boundary
        counts.add("sync", at: t0)
        counts.add("sync", at: t0 + 59_999)
        counts.add("async", at: t0 + 60_000, count: 3)
        var series = counts.series(now: t0 + 60_000)
        #expect(series.count == 60)
        #expect(series.last?.start == t0 + 60_000 && series.last?.counts == ["async": 3])
        #expect(series[58].start == t0 && series[58].counts == ["sync": 2])
        #expect(counts.keys(now: t0 + 60_000) == ["async", "sync"])
        // An hour later the same ring slot holds a new minute; the old counts are not read as the new ones.
        counts.add("sync", at: t0 + 3_600_000)
        series = counts.series(now: t0 + 3_600_000)
        #expect(series.last?.counts == ["sync": 1], "t0's two are not read as the new minute's in the same slot")
        #expect(series.first?.counts == ["async": 3], "59 minutes ago is still in the hour")
        #expect(counts.series(now: t0 + 3_660_000).allSatisfy { $0.counts["async"] == nil }, "60 minutes ago is not")
        #expect(counts.series(now: t0 + 10 * 3_600_000).allSatisfy { $0.counts.isEmpty }, "nothing in the last hour")
    }

    @Test func theSlowLogShowsShapesNeverTheBody() {
        let secret = String(repeating: "s", count: 100)
        let input: JSONValue = [
            "input_data": .string(secret), "iterations": 3, "callback_url": "http://h.example/", "nested": ["a": 1],
            "list": [1, 2], "evil\"\n\u{1b}[31m": "é\u{0}", "password": "hunter2",
        ]
        let text = SlowLog.parameters(input: input, query: ["apikey": "QUERYSECRET"])
        #expect(!text.contains(secret) && !text.contains("hunter2") && !text.contains("QUERYSECRET"), "no string value, however short")
        #expect(text.contains(#""input_data"=string(100 bytes)"#) && text.contains(#""password"=string(7 bytes)"#))
        #expect(text.contains(#""iterations"=3"#) && text.contains(#""nested"=object(1)"#) && text.contains(#""list"=array(2)"#))
        #expect(text.contains(#""callback_url"=string(17 bytes)"#))
        #expect(text.contains(#"?"apikey"=string(11 bytes)"#))
        #expect(text.contains(#""evil\"\u000a\u001b[31m"=string(3 bytes)"#), "\(text)")
        #expect(text.unicodeScalars.allSatisfy { (" "..."~").contains($0) }, "printable ASCII only, whatever was sent")
        let many: JSONValue = .object(Dictionary(uniqueKeysWithValues: (0..<100).map { ("k\($0)" + String(repeating: "x", count: 40), JSONValue.string(secret)) }))
        let bounded = SlowLog.parameters(input: many, query: [:])
        #expect(bounded.utf8.count <= SlowLog.maxTotal && bounded.hasSuffix("..."))
    }

    @Test func axesEndOnRoundNumbers() {
        #expect([0, 1, 2, 3, 7, 10, 11, 49, 51, 999, 1001].map(OperatorPage.axisTop) == [1, 1, 2, 5, 10, 10, 20, 50, 100, 1000, 2000])
    }

    @Test func aChartCarriesEachMinutesCountAndLabelsItsAxes() {
        let start: Int64 = 1_800_000_000_000
        let svg = OperatorPage.chart(
            id: "t", title: "answers <per> minute", start: start, lines: [("sync<script>", "#000", Array(repeating: 0, count: 59) + [7])])
        #expect(svg.contains("<title>") && svg.contains(" 7</title>"))
        #expect(svg.contains("minute (UTC)") && svg.contains("per minute"))
        #expect(svg.contains(">10<"), "the y axis ends at 10 for a peak of 7")
        #expect(!svg.contains("<script>") && svg.contains("sync&lt;script&gt;") && svg.contains("answers &lt;per&gt; minute"))
        #expect(svg.contains("(7 in the hour, 7 this minute)"))
    }

    @Test func theNowViewSaysAgesFromTheClaim() {
        // Renewed: the lease's end says nothing of the claim.
        let job = JobInHand(id: "j", op: .hash, status: .processing, attempts: 0, createdAt: 1000, leaseUntil: 130_000, owner: "n2", leasedAt: 10_000)
        let nodes = DeliverydNodes(
            [NodeStatus(id: "n2", name: "b", pid: 9, startedAt: 0, heartbeatAt: 14_500), NodeStatus(id: "n1", name: "a", pid: 8, startedAt: 0, heartbeatAt: 1_000)],
            now: 15_000, timeoutMillis: 10_000)
        let view = NowView(
            at: 15_000, sync: [.init(requestID: "r", op: "hash", handler: nil, startedAt: 14_000)], syncInFlight: 1, syncSlots: 10,
            syncSlotsFull: 2, pools: [FastCGIServer.Status(name: "sync", threads: 64, busy: 1, queued: nil, queueLimit: nil)],
            inHand: [job], nodes: nodes, deliverydRunning: true, backlog: 1, backlogLimit: 1000, oldestPendingAt: 5000,
            storage: nil, storageState: nil)
        let json = view.json
        #expect(json["sync"]?["computations"]?.arrayValue?.first?["age_ms"] == 1000)
        #expect(json["deliveryd"]?["jobs_in_hand"]?.arrayValue?.first?["age_ms"] == 5000, "from its claim")
        #expect(json["deliveryd"]?["jobs_in_hand"]?.arrayValue?.first?["node"] == "b", "held by node b")
        let listed = json["deliveryd"]?["nodes"]?.arrayValue ?? []
        #expect(listed.map { $0["name"] } == ["a", "b"] && listed.map { $0["state"] } == ["dead", "alive"], "\(listed)")
        #expect(listed.map { $0["heartbeat_age_ms"] } == [14_000, 500])
        #expect(json["backlog"]?["oldest_pending_age_ms"] == 10_000)
        #expect(json["pools"]?.arrayValue?.first?["queued"] == .null, "unreadable is null, not 0")
        #expect(json["sync"]?["slots_full_total"] == 2)
    }
}

extension JSONValue {
    fileprivate var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
}
