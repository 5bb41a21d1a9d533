import Logging
import Store
import Testing

@testable import Delivery

/// deliveryd's line per attempt (issue 20, item 6): failures at warning and error, not info; the HTTP status
/// and the reason when there is one; times as ISO 8601, never raw epoch milliseconds.
@Suite struct AttemptLogTests {
    func write(_ outcome: AttemptOutcome, status: Int?, error: String?) -> AttemptWrite {
        AttemptWrite(
            id: "01a2-job", attempt: AttemptRecord(n: 2, at: 1_796_160_493_000, durationMs: 3.14159, httpStatus: status, error: error, nextAttemptAt: nil),
            outcome: outcome)
    }

    @Test func aDeliveryIsInfoWithItsStatus() {
        let (level, metadata) = Recorder.logEntry(write(.delivered, status: 200, error: nil))
        #expect(level == .info)
        #expect(metadata["outcome"] == "delivered" && metadata["http_status"] == "200" && metadata["attempt"] == "2")
        #expect(metadata["request_id"] == "01a2-job" && metadata["duration_ms"] == "3.1" && metadata["error"] == nil)
    }

    @Test func aRetryIsAWarningWithItsReasonAndAnISOTime() {
        let (level, metadata) = Recorder.logEntry(write(.retry(at: 1_796_160_493_555), status: 500, error: "HTTP 500"))
        #expect(level == .warning)
        #expect(metadata["outcome"] == "retry" && metadata["http_status"] == "500" && metadata["error"] == "HTTP 500")
        #expect(metadata["retry_at"] == "2026-12-01T21:28:13.555Z")
        #expect(!metadata.values.contains { "\($0)".contains("1796160493555") }, "no epoch milliseconds: \(metadata)")
    }

    @Test func givingUpIsAnErrorWithTheReasonAndNoStatusWhenNoneCame() {
        let (level, metadata) = Recorder.logEntry(write(.giveUp(reason: "retries exhausted"), status: nil, error: "connection refused"))
        #expect(level == .error)
        #expect(metadata["outcome"] == "gave_up" && metadata["reason"] == "retries exhausted" && metadata["error"] == "connection refused")
        #expect(metadata["http_status"] == nil, "no '-' standing for a status that never came")
    }
}
