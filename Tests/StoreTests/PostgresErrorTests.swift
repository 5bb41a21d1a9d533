import Testing

@testable import Store

/// A connection string's password never reaches an error message (and so the logs), however libpq
/// reports the failure: it quotes the bad token of a string it cannot parse, which may be the password.
@Suite struct PostgresErrorTests {
    @Test(arguments: [
        "postgresql://workfcgi:p%zzSECRET@/wf?host=/nonexistent",
        "postgresql:///wf?host=/nonexistent&password=SECRET%zz",
        "host=/nonexistent password=my SECRET dbname=wf",
        "postgresql://workfcgi:SECRET@127.0.0.1:1/wf?connect_timeout=2",
        "host=127.0.0.1 port=1 password=SECRET dbname=wf connect_timeout=2",
    ])
    func theConnectErrorNeverCarriesThePassword(_ url: String) {
        do {
            _ = try PostgresConnection(url: url)
            Issue.record("connected to \(url)")
        } catch {
            let text = "\(error)"
            #expect(!text.contains("SECRET"), "\(text)")
            #expect(text.hasPrefix("PostgreSQL"), "\(text)")
        }
    }

    @Test func aParsedPasswordIsMaskedWhereverItAppears() {
        #expect(
            PostgresConnection.redacted("FATAL: password hunter2 rejected", url: "postgresql://u:hunter2@/db")
                == "FATAL: password (masked) rejected")
        #expect(PostgresConnection.redacted("could not connect", url: "postgresql:///db") == "could not connect")
    }
}
