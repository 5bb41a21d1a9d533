import Foundation
import Harness
import Testing

/// Output and disk amplification: a request cannot make a response or a stored record much larger than
/// itself, and the database has a bound; reaching it refuses new jobs clearly and is never silent.
@Suite(.serialized, .timeLimit(.minutes(2))) struct StorageBoundTests {
    @Test func largeTextIsBoundedInBytes() throws {
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        let client = HTTPClient()
        // 5,000 characters of 100 bytes each: once accepted (characters were counted), 20 repeats gave ~10 MB.
        let heavy = String(repeating: "e" + String(repeating: "\u{301}", count: 49), count: 5_000)
        let refused = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(heavy)", "count": 20}"#)
        #expect(refused.status == 422)
        #expect((refused.json?["error"] as? [String: Any])?["field"] as? String == "text")
        let accepted = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(String(repeating: "ab ", count: 3_000))", "count": 20}"#)
        #expect(accepted.status == 200)
        #expect(accepted.body.count < 1 << 20)
    }

    @Test func aFullDatabaseRefusesJobsAndSaysSo() throws {
        let stack = try Stack(settings: ["WORKFCGI_MAX_DB_SIZE": "1m"])
        try stack.start([.workfcgi, .nginx])
        let client = HTTPClient()
        let text = String(repeating: "x", count: 9_000)
        var refusal: HTTPClient.Response?
        for i in 0..<400 {
            let r = try client.postJSON(stack.baseURL + "/async", #"{"text": "\#(text)\#(i)", "callback_url": "http://127.0.0.1:9/x"}"#)
            if r.status != 202 {
                refusal = r
                break
            }
        }
        let full = try #require(refusal, "1 MiB never filled")
        #expect(full.status == 503)
        #expect((full.json?["error"] as? [String: Any])?["code"] as? String == "storage_full", "\(full.text)")
        #expect(full.headers["retry-after"] != nil)

        // /sync still answers (the work is done), but the lost record is logged and counted, not silent.
        let sync = try client.postJSON(stack.baseURL + "/sync", #"{"text": "\#(text)"}"#)
        #expect(sync.status == 200)
        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_sync_records_lost_total{reason="store_full"} 1"#), "\(metrics)")
        #expect(metrics.contains("workfcgi_store_full_refusals_total 1"))
        #expect(stack.log(.workfcgi).contains("sync result answered but not recorded"))
        #expect(try client.get(stack.baseURL + "/healthz").status == 200, "reads still work")
    }
}
