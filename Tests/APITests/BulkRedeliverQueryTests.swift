import Store
import Testing

@testable import API

@Suite struct BulkRedeliverQueryTests {
    let now: UnixMillis = 1_800_000_000_000

    func field(_ query: [String: String]) -> String? {
        do throws(APIError) {
            _ = try BulkRedeliverQuery.selection(query, now: now)
            return nil
        } catch {
            if case .invalidQuery(_, let field) = error { return field }
            return "?"
        }
    }

    @Test func aWindowAHostAndABound() throws {
        let s = try BulkRedeliverQuery.selection(["since": "2027-01-15T08:00:00Z", "until": "2027-01-15T09:00:00.500Z", "host": "Hooks.Example"], now: now)
        #expect(s.window == BulkRedeliverQuery.wholeSeconds("2027-01-15T08:00:00Z")!..<Timestamp.millis("2027-01-15T09:00:00.500Z")!)
        #expect(s.host == "hooks.example" && s.limit == BulkRedeliverQuery.defaultLimit)
        let ms = try BulkRedeliverQuery.selection(["since": "1000", "limit": "1000"], now: now)
        #expect(ms.window == 1000..<(now + 1) && ms.host == nil && ms.limit == 1000)
    }

    @Test func badQueriesNameTheirField() {
        #expect(field([:]) == "since")
        #expect(field(["since": "yesterday"]) == "since")
        #expect(field(["since": "2000", "until": "1000"]) == "since")
        #expect(field(["since": "1000", "until": "soon"]) == "until")
        for limit in ["0", "1001", "x", "-1"] { #expect(field(["since": "1000", "limit": limit]) == "limit") }
        for host in ["", "a b", "http://x", "x/y", "x?y", String(repeating: "a", count: 256), "é.example"] {
            #expect(field(["since": "1000", "host": host]) == "host", "\(host)")
        }
        #expect(field(["since": "1000", "host": "[::1]"]) == nil)
        // A misspelt name is refused, not ignored: `hots=` would have widened the recovery to every host.
        #expect(field(["since": "1000", "hots": "hooks.example"]) == "hots")
        #expect(field(["since": "1000", "until": "9223372036854775807"]) == "until", "past year 9999")
        #expect(field(["since": "1000", "until": "253402300799999"]) == nil)
    }
}
