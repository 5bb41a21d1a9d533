import JSON
import Store
import Testing
import WorkEngine

@testable import API

/// The overview list's pure parts: the reason column and the "older" link.
@Suite struct OperatorListTests {
    func record(_ id: String, error: String? = nil, deliveryError: String? = nil) -> RequestRecord {
        RequestRecord(
            id: id, mode: .async, op: .text, status: .failed, input: [:], result: nil, error: error, callbackURL: nil,
            deliveryError: deliveryError, attempts: 1, nextAttemptAt: nil, createdAt: 0, startedAt: nil, completedAt: nil,
            deliveredAt: nil, durationMs: nil, trace: [])
    }

    @Test func theReasonIsDeliverysElseTheWorksCutToALine() {
        #expect(OperatorPage.reason(record("a")) == "")
        #expect(OperatorPage.reason(record("a", error: "bad input")) == "bad input")
        #expect(OperatorPage.reason(record("a", error: "bad input", deliveryError: "HTTP 410")) == "HTTP 410")
        #expect(OperatorPage.reason(record("a", deliveryError: String(repeating: "x", count: 500))).count == 120)
    }

    @Test func aFullPageLinksToTheNextWithItsFilters() {
        let page = (0..<OperatorPage.pageSize).map { record("id\($0)") }
        #expect(OperatorPage.nextPageLink(Array(page.dropLast()), mode: nil, status: nil) == "")
        let link = OperatorPage.nextPageLink(page, mode: .async, status: .failed)
        #expect(link.contains("href=\"/ui?before=id49&mode=async&status=failed\""), "\(link)")
    }
}
