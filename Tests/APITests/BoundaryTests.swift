@testable import API
import CallbackPolicy
import Config
import Doorbell
import FastCGI
import Foundation
import JSON
import Store
import Testing
import WorkEngine

/// The trust boundary inside workfcgi: one spelling per route, the operator rule (address, Host, Origin), the
/// pools, and what the public /healthz shows. In process over a real SQLite store, as APITests.
@Suite struct BoundaryTests {
    let api: API
    let store: SQLiteStore
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "workfcgi-boundary-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory + "/api.db")
        let settings = try Settings(environment: [:])
        api = API(
            store: store, engine: WorkEngine(sleep: { _ in }),
            policy: CallbackURLPolicy(allowPrivate: true, allowedPorts: [1...65_535]),
            doorbell: Doorbell(path: directory + "/none.sock"), settings: settings, operators: try OperatorRule(settings: settings))
    }

    func call(
        _ method: HTTPMethod, _ path: String, client: String = "192.0.2.1", headers: [String: String] = [:], pool: Pool = .api,
        serverPort: Int? = 8080
    ) -> HTTPResponse {
        let headers = ["host": "127.0.0.1:8080"].merging(headers) { $1 }
        return api.handle(HTTPRequest(method: method, path: path, headers: headers, remoteAddress: client, serverPort: serverPort), pool: pool)
    }

    static let id = "0194d1a2-7b3c-7def-8123-456789abcdef"
    /// Every operator endpoint, by its one spelling.
    static let operatorPaths = ["/requests", "/metrics", "/status", "/ui", "/ui/requests/\(id)", "/requests/\(id)/redeliver", "/ui/requests/\(id)/redeliver", "/requests/redeliver", "/ui/redeliver"]

    /// Other spellings of `path` that a lenient router, a front end or a URL parser might take for it.
    static func spellings(_ path: String) -> [String] {
        var out = [path + "/", path + "//", path + "/.", path + "/./", "/" + path, path.replacingOccurrences(of: "/", with: "//"),
            path + "%2F", path + "%2f", path.uppercased(), path.capitalized, path + "/..", path + "/../" + path.split(separator: "/").last!,
            path.replacingOccurrences(of: "/", with: "/./"), path + "\u{0}", path + "%00", path + ";", path + ";x=1", path + " ",
            path + "%20", path + "\\", path.replacingOccurrences(of: "/", with: "\\"), path + "#", path + "?", path + "/x/..",
            path.replacingOccurrences(of: "e", with: "%65"), path.replacingOccurrences(of: "/", with: "%2F"), "." + path, path + "~"]
        if let last = path.split(separator: "/").last { out.append(path + "/" + last) }
        return out
    }

    @Test func everyRouteHasExactlyOneSpelling() {
        let canonical = ["/sync", "/async", "/healthz", "/openapi.json", "/docs", "/requests/\(Self.id)"] + Self.operatorPaths
        for path in canonical {
            #expect(Route(path: path)?.path == path, "\(path)")
            for other in Self.spellings(path) where other != path {
                #expect(Route(path: other) == nil, "\(other) must not name a route")
            }
        }
    }

    @Test func noSpellingReachesAnOperatorEndpointFromElsewhere() {
        for path in Self.operatorPaths {
            for spelling in [path] + Self.spellings(path) {
                for method: HTTPMethod in [.get, .head, .post] {
                    let r = call(method, spelling)
                    #expect(!(200..<400).contains(r.status), "\(method) \(spelling) answered \(r.status)")
                }
            }
        }
    }

    /// Random paths from the pieces routes are made of: whatever names a route names it by its one spelling,
    /// and nothing that is an operator route, or no route, answers a non-operator with success.
    @Test func fuzzedPathsKeepTheOperatorRule() {
        var rng = SystemRandomNumberGenerator()
        let pieces = ["/", "/", "/", ".", "..", "%2F", "%2e", "requests", "metrics", "ui", "redeliver", Self.id, "Requests", "healthz", "sync",
            "\u{0}", ";", "%", "%25", "\\", "?", "#", " "]
        for _ in 0..<4_000 {
            let path = (0..<Int.random(in: 1...7, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            let route = Route(path: path)
            if let route { #expect(route.path == path) }
            guard route == nil || route!.isOperator else { continue }
            for method: HTTPMethod in [.get, .post] {
                let r = call(method, path)
                #expect(!(200..<400).contains(r.status), "\(method) \(path.debugDescription) answered \(r.status)")
            }
        }
    }

    @Test func operatorsAreKnownByAddressAndHost() {
        #expect(call("GET", "/metrics", client: "127.0.0.1").status == 200)
        #expect(call("GET", "/metrics", client: "::1").status == 200)
        #expect(call("GET", "/metrics", client: "::ffff:127.0.0.1").status == 200, "a dual-stack listener's mapped address")
        #expect(call("GET", "/metrics", client: "127.0.0.2").status == 403)
        #expect(call("GET", "/metrics", client: "").status == 403, "no REMOTE_ADDR is nobody")
        #expect(call("GET", "/metrics", client: "127.0.0.1", headers: ["host": "127.0.0.1:8080"]).status == 200)
        #expect(call("GET", "/metrics", client: "127.0.0.1", headers: ["host": "LOCALHOST.:8080"]).status == 200)
        #expect(call("GET", "/metrics", client: "::1", headers: ["host": "[::1]:8080"]).status == 200)
        // DNS rebinding: the operator's browser on a page whose name now points at loopback.
        let rebound = call("GET", "/requests", client: "127.0.0.1", headers: ["host": "evil.example:8080"])
        #expect(rebound.status == 403 && String(decoding: rebound.body, as: UTF8.self).contains("WORKFCGI_OPERATOR_HOSTS"))
        #expect(call("GET", "/ui", client: "127.0.0.1", headers: ["host": "localhost:9999"]).status == 403, "another port's page")
        #expect(call("GET", "/ui", client: "127.0.0.1", headers: ["host": "localhost:x"]).status == 403)
        for port in ["+8080", "08080", "8080 ", "-8080", "80800"] {
            #expect(call("GET", "/ui", client: "127.0.0.1", headers: ["host": "localhost:\(port)"]).status == 403, "\(port)")
        }
        // No Host at all (HTTP/1.0), an absolute-form target naming another host, or a second Host or Origin.
        let bare = api.handle(HTTPRequest(method: "GET", path: "/metrics", remoteAddress: "127.0.0.1"), pool: .api)
        #expect(bare.status == 403)
        var absolute = HTTPRequest(method: "GET", path: "/ui", headers: ["host": "127.0.0.1:8080"], remoteAddress: "127.0.0.1", serverPort: 8080)
        absolute.target = "http://evil.example/ui"
        #expect(api.handle(absolute, pool: .api).status == 403)
        absolute.target = "/ui"
        #expect(api.handle(absolute, pool: .api).status == 200)
        let twice = HTTPRequest(
            params: [("REQUEST_METHOD", "POST"), ("DOCUMENT_URI", "/requests/\(Self.id)/redeliver"), ("REMOTE_ADDR", "127.0.0.1"),
                ("HTTP_HOST", "127.0.0.1"), ("HTTP_ORIGIN", "http://evil.example"), ("HTTP_ORIGIN", "http://127.0.0.1")])
        #expect(api.handle(twice, pool: .api).status == 403)
    }

    @Test func anIdHasOneSpelling() {
        let wide = Self.id.replacingOccurrences(of: "0", with: "\u{FF10}")
        #expect(Route(path: "/requests/\(wide)/redeliver") == nil && Route(path: "/requests/\(wide)") == nil)
        #expect(Route(path: "/requests/\(Self.id.uppercased())") == nil)
    }

    @Test func stateChangesRefuseCrossSiteBrowsers() {
        let path = "/requests/\(Self.id)/redeliver"
        let local = ["host": "127.0.0.1:8080"]
        // A cross-site "simple" request (no preflight): text/plain body, the attacker's Origin.
        let csrf = call("POST", path, client: "127.0.0.1", headers: local.merging(["origin": "http://evil.example", "content-type": "text/plain"]) { $1 })
        #expect(csrf.status == 403)
        #expect(call("POST", path, client: "127.0.0.1", headers: local.merging(["origin": "null"]) { $1 }).status == 403)
        #expect(call("POST", path, client: "127.0.0.1", headers: local.merging(["sec-fetch-site": "cross-site"]) { $1 }).status == 403)
        #expect(call("POST", path, client: "127.0.0.1", headers: local.merging(["sec-fetch-site": "same-site"]) { $1 }).status == 403)
        // The operator's own page, or a client that is no browser: through to the handler (no such job: 404).
        #expect(call("POST", path, client: "127.0.0.1", headers: local.merging(["origin": "http://127.0.0.1:8080"]) { $1 }).status == 404)
        #expect(call("POST", path, client: "127.0.0.1", headers: local).status == 404)
        #expect(call("POST", path, client: "127.0.0.1").status == 404)
        // Reading is not changing: a GET with a foreign Origin is still refused only by Host.
        #expect(call("GET", "/metrics", client: "127.0.0.1", headers: local.merging(["origin": "http://evil.example"]) { $1 }).status == 200)
    }

    @Test func aCallbackFromThisServiceCannotCallIt() {
        let signed = ["webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,xyz"]
        let r = call("POST", "/requests/\(Self.id)/redeliver", client: "127.0.0.1", headers: signed)
        #expect(r.status == 403)
        #expect(call("GET", "/metrics", client: "127.0.0.1", headers: signed).status == 403)
    }

    @Test func computeRunsOnlyOnTheSyncPool() {
        let misrouted = call("POST", "/sync", headers: ["content-type": "application/json"], pool: .api)
        #expect(misrouted.status == 421 && String(decoding: misrouted.body, as: UTF8.self).contains("misrouted"))
        #expect(call("GET", "/healthz", pool: .sync).status == 421)
        #expect(call("POST", "/sync/", pool: .api).status == 404)
        #expect(call("POST", "/sync/", pool: .sync).status == 404)
    }

    @Test func publicHealthCountsCircuitsButNamesNoHost() throws {
        let circuits = [Circuit(host: "hooks.private.example:443", state: .open, consecutiveFailures: 5, retryAt: WallClock.nowMillis() + 60_000)]
        let now = WallClock.nowMillis()
        _ = try store.heartbeat(
            NodeStatus(id: "n1", name: "delivery-7.internal", pid: 1, startedAt: now, heartbeatAt: now, circuits: circuits), renew: [], leaseMillis: 1000,
            now: now)
        let open = String(decoding: call("GET", "/healthz").body, as: UTF8.self)
        #expect(!open.contains("hooks.private.example") && open.contains(#""open_circuits":1"#), "\(open)")
        #expect(!open.contains("delivery-7.internal") && open.contains(#""nodes_alive":1"#), "nodes by count only: \(open)")
        let operatorView = String(decoding: call("GET", "/healthz", client: "127.0.0.1").body, as: UTF8.self)
        #expect(operatorView.contains("hooks.private.example"))
        #expect(operatorView.contains(#""name":"delivery-7.internal""#) && operatorView.contains(#""state":"alive""#), "\(operatorView)")
    }
}
