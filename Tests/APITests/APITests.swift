import API
import CallbackPolicy
import Config
import Doorbell
import FastCGI
import Foundation
import JSON
import Store
import Testing
import WorkEngine

/// The API's answers, driven in process: `API.handle(HTTPRequest)` over a real SQLite store in a temp
/// folder, no nginx, no daemons, no sockets (the doorbell rings nobody), no DNS.
@Suite final class APITests {
    let directory = NSTemporaryDirectory() + "apitests-" + UUID().uuidString
    let store: SQLiteStore
    let api: API

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory + "/api.db")
        var settings = try Settings(environment: [:])
        settings.backlogLimit = 3
        settings.syncWaitMilliseconds = 50
        // The policy resolves nothing: names are looked up by deliveryd, before each attempt.
        let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: settings.callbackPorts)
        api = API(
            store: store, engine: WorkEngine(sleep: { _ in }), policy: policy, doorbell: Doorbell(path: directory + "/none.sock"),
            settings: settings, operators: OperatorRule(addresses: [CIDR("127.0.0.1/32")!, CIDR("::1/128")!], hosts: ["localhost", "127.0.0.1"]))
    }

    deinit {
        store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func call(
        _ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: String? = nil,
        headers: [String: String] = ["content-type": "application/json"], client: String = "192.0.2.1"
    ) -> (status: Int, json: JSONValue, headers: [String: String]) {
        let response = api.handle(
            HTTPRequest(
                method: method, path: path, query: query, headers: ["host": "localhost"].merging(headers) { $1 }, remoteAddress: client,
                body: Array((body ?? "").utf8)),
            pool: path == "/sync" ? .sync : .api)
        let names = Dictionary(response.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { $1 })
        return (response.status, (try? JSONValue.parse(response.body)) ?? .null, names)
    }

    func errorCode(_ r: (status: Int, json: JSONValue, headers: [String: String])) -> String? {
        r.json["error"]?["code"]?.stringValue
    }

    let asyncBody = #"{"input_data":"x","iterations":1,"callback_url":"https://hooks.example.com/cb"}"#

    @Test func routingAndMethods() {
        let missing = call("GET", "/nope")
        #expect(missing.status == 404 && errorCode(missing) == "not_found")
        let wrong = call("GET", "/async")
        #expect(wrong.status == 405 && errorCode(wrong) == "method_not_allowed" && wrong.headers["allow"] == "POST")
        let post = call("POST", "/healthz")
        #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD")
        #expect(call("HEAD", "/healthz").status == 200)
        #expect(call("GET", "/healthz/").status == 404, "every endpoint has one spelling")
        #expect(call("GET", "/healthz").json["status"] == "degraded", "no deliveryd heartbeat here")
    }

    @Test(arguments: [
        ("/sync", "{", "application/json", 400, "bad_json", nil),
        ("/sync", "[]", "application/json", 422, "invalid_body", nil),
        ("/sync", #"{"input_data":"x","iterations":0}"#, "application/json", 422, "out_of_range", "iterations"),
        ("/sync", #"{"input_data":"x"}"#, "text/plain", 415, "unsupported_media_type", "Content-Type"),
        ("/async", #"{"input_data":"x"}"#, "application/json", 422, "missing_field", "callback_url"),
        ("/async", #"{"input_data":"x","callback_url":"http://10.0.0.7/"}"#, "application/json", 422, "invalid_callback_url",
            "callback_url"),
        ("/async", #"{"input_data":"x","callback_url":"http://[::ffff:0:127.0.0.1]:9000/"}"#, "application/json", 422,
            "invalid_callback_url", "callback_url"),
        ("/async", #"{"input_data":"x","callback_url":"ftp://hooks.example.com/"}"#, "application/json", 422, "invalid_callback_url",
            "callback_url"),
    ] as [(String, String, String, Int, String, String?)])
    func refusals(path: String, body: String, contentType: String, status: Int, code: String, field: String?) {
        let r = call("POST", path, body: body, headers: ["content-type": contentType])
        #expect(r.status == status && errorCode(r) == code, "\(body): \(r.json.text)")
        #expect(r.json["error"]?["field"]?.stringValue == field)
        #expect(r.json["error"]?["message"]?.stringValue?.isEmpty == false)
    }

    @Test func aPrivateCallbackIsRefusedNamingTheSettingThatAllowsIt() {
        let r = call("POST", "/async", body: #"{"input_data":"x","callback_url":"http://10.0.0.7/"}"#)
        #expect(r.json["error"]?["message"]?.stringValue?.contains("WORKFCGI_ALLOW_PRIVATE_CALLBACKS") == true)
    }

    /// A host name is not looked up at accept (a slow name server would hold a request thread others
    /// share): it is accepted, and deliveryd resolves it before each attempt.
    @Test func aCallbackHostNameIsAcceptedWithoutALookup() {
        for host in ["never-resolves.example.test", "inside.example.com"] {
            let r = call("POST", "/async", body: #"{"input_data":"x","callback_url":"http://\#(host)/cb"}"#)
            #expect(r.status == 202, "\(host): \(r.json)")
        }
    }

    @Test func asyncAcceptsAndIdempotencyKeysReplayOrRefuse() throws {
        let first = call("POST", "/async", body: asyncBody, headers: ["content-type": "application/json", "idempotency-key": "k1"])
        #expect(first.status == 202 && first.json["status"] == "pending")
        let id = try #require(first.json["request_id"]?.stringValue)
        #expect(first.headers["location"] == "/requests/\(id)")
        let replay = call("POST", "/async", body: asyncBody, headers: ["content-type": "application/json", "idempotency-key": "k1"])
        #expect(replay.status == 202 && replay.json["request_id"]?.stringValue == id && replay.headers["idempotent-replayed"] == "true")
        let other = call(
            "POST", "/async", body: asyncBody, headers: ["content-type": "application/json", "idempotency-key": "k1"], client: "192.0.2.2")
        #expect(other.status == 202 && other.json["request_id"]?.stringValue != id, "keys are per client")
        let reused = call(
            "POST", "/async", body: asyncBody.replacingOccurrences(of: "\"x\"", with: "\"y\""),
            headers: ["content-type": "application/json", "idempotency-key": "k1"])
        #expect(reused.status == 422 && errorCode(reused) == "idempotency_key_reused")
        let bad = call("POST", "/async", body: asyncBody, headers: ["content-type": "application/json", "idempotency-key": "é"])
        #expect(bad.status == 400 && errorCode(bad) == "invalid_idempotency_key")

        let record = call("GET", "/requests/\(id)")
        #expect(record.status == 200 && record.json["mode"] == "async" && record.json["delivery"]?["status"] == "pending")
        let early = call("POST", "/requests/\(id)/redeliver", client: "127.0.0.1")
        #expect(early.status == 409 && errorCode(early) == "not_finished")
    }

    @Test func theBacklogBoundAnswers503WithRetryAfter() {
        for _ in 0..<3 { #expect(call("POST", "/async", body: asyncBody).status == 202) }
        let full = call("POST", "/async", body: asyncBody)
        #expect(full.status == 503 && errorCode(full) == "backlog_full" && full.headers["retry-after"] == "5")
    }

    @Test func syncAnswersInlineAndIsRecordedAndListed() throws {
        let r = call("POST", "/sync", body: #"{"input_data":"abc","iterations":1}"#)
        #expect(r.status == 200 && r.json["status"] == "completed")
        #expect(r.json["result"]?["hash"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let id = try #require(r.json["request_id"]?.stringValue)
        #expect(call("GET", "/requests/\(id)").json["result"] == r.json["result"])
        let list = call("GET", "/requests", query: ["mode": "sync", "limit": "5"], client: "127.0.0.1")
        guard case .array(let listed)? = list.json["requests"] else { Issue.record("no list: \(list.json.text)"); return }
        #expect(list.status == 200 && listed.first?["request_id"]?.stringValue == id)
        #expect(call("GET", "/requests", query: ["mode": "async"], client: "127.0.0.1").json["requests"] == [])
        for (key, value) in [("mode", "batch"), ("limit", "0"), ("status", "done"), ("before", "x"), ("color", "red")] {
            let bad = call("GET", "/requests", query: [key: value], client: "127.0.0.1")
            #expect(bad.status == 400 && errorCode(bad) == "invalid_query" && bad.json["error"]?["field"]?.stringValue == key)
        }
        #expect(call("GET", "/requests/not-an-id").status == 404)
        #expect(call("GET", "/requests/\(RequestID.make())").status == 404)
    }

    @Test func bodyTooLargeIs413() {
        let r = api.handle(
            HTTPRequest(method: "POST", path: "/sync", headers: ["content-type": "application/json"], bodyTooLarge: true), pool: .sync)
        #expect(r.status == 413)
    }
}
