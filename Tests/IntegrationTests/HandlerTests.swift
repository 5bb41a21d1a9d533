import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Handlers through the real stack (issue 21): the repository's examples and a few test programs in a
/// handlers folder, asked for through nginx on /sync and /async, the callback received on loopback.
@Suite(.serialized, .timeLimit(.minutes(3))) final class HandlerTests {
    /// A handlers folder of its own (0700, under the temporary folder): the examples and the test programs.
    static func makeFolder() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/workfcgi-it-handlers-XXXXXX").utf8CString)
        let folder = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        for name in ["checksum", "wordfreq"] {
            let path = folder + "/" + name
            try FileManager.default.copyItem(atPath: Stack.packageRoot.appendingPathComponent("handlers/\(name)").path, toPath: path)
            chmod(path, 0o755)
        }
        let programs = [
            "fail": "#!/bin/sh\necho 'no such page: 7' >&2\nexit 3\n",
            "slow": "#!/bin/sh\nsleep 1000\n",
            "nap": "#!/bin/sh\nsleep 0.5\necho '\"rested\"'\n",
        ]
        for (name, script) in programs {
            try script.write(toFile: folder + "/" + name, atomically: false, encoding: .utf8)
            chmod(folder + "/" + name, 0o755)
        }
        return folder
    }

    static let settings = ["WORKFCGI_HANDLER_TIMEOUT": "1s", "WORKFCGI_LEASE": "10s"]

    /// A stack whose handlers folder is set up before the daemons start (they read it at start).
    static func started(_ folder: String) async throws -> (Stack, CallbackReceiver, UInt16) {
        try await Stack.startedWithReceiver(settings: settings.merging(["WORKFCGI_HANDLERS_DIR": folder]) { $1 })
    }

    let folder: String
    init() throws { folder = try Self.makeFolder() }
    deinit { try? FileManager.default.removeItem(atPath: folder) }

    @Test func aHandlersResultThroughSyncAndAsync() async throws {
        let (stack, receiver, port) = try await Self.started(folder)
        let client = HTTPClient()

        let sync = try client.postJSON(stack.baseURL + "/sync", #"{"handler": "wordfreq", "input": {"text": "to be or not to be", "top": 2}}"#)
        #expect(sync.status == 200, "\(sync.text)")
        #expect(sync.json?["handler"] as? String == "wordfreq")
        let result = try #require(sync.json?["result"] as? [String: Any])
        #expect(result["words"] as? Int == 6)
        #expect((result["top"] as? [[Any]])?.first?.first as? String == "to")
        let id = try #require(sync.json?["request_id"] as? String)
        let record = try stack.record(id)
        #expect(record["op"] as? String == "handler")
        #expect((record["handler"] as? [String: Any])?["name"] as? String == "wordfreq")
        #expect((record["handler"] as? [String: Any])?["exit_status"] as? Int == 0)
        let metrics = try client.get(stack.baseURL + "/metrics").text
        #expect(metrics.contains(#"workfcgi_handler_runs_total{handler="wordfreq",mode="sync"} 1"#))
        #expect(metrics.contains(#"workfcgi_handler_duration_seconds_count{handler="wordfreq",mode="sync"} 1"#))

        let asyncID = try stack.submit(#"{"handler": "checksum", "input": {"a": 1}, "callback_url": "http://127.0.0.1:\#(port)/ok/h"}"#)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == asyncID } })
        let call = try #require(receiver.calls.first { $0.webhookID == asyncID })
        let body = try #require(try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any])
        #expect(body["status"] as? String == "completed")
        #expect(body["op"] as? String == "handler")
        let checksum = try #require(body["result"] as? [String: Any])
        #expect(checksum["bytes"] as? Int == 7)
        // The handler was told which request it ran for.
        #expect(checksum["request_id"] as? String == asyncID)
        await receiver.stop()
    }

    @Test func failuresCarryTheExitStatusAndStderr() async throws {
        let (stack, receiver, port) = try await Self.started(folder)
        let client = HTTPClient()

        let failed = try client.postJSON(stack.baseURL + "/sync", #"{"handler": "fail", "input": null}"#)
        #expect(failed.status == 502)
        let error = try #require(failed.json?["error"] as? [String: Any])
        #expect(error["code"] as? String == "handler_failed")
        #expect(error["exit_status"] as? Int == 3)
        #expect(error["stderr_tail"] as? String == "no such page: 7\n")
        let id = try #require(failed.json?["request_id"] as? String)
        let record = try stack.record(id)
        #expect(record["status"] as? String == "failed")
        #expect((record["handler"] as? [String: Any])?["stderr_tail"] as? String == "no such page: 7\n")

        let slow = try client.postJSON(stack.baseURL + "/sync", #"{"handler": "slow", "input": 1}"#)
        #expect(slow.status == 504)
        #expect((slow.json?["error"] as? [String: Any])?["code"] as? String == "handler_timeout")

        let unknown = try client.postJSON(stack.baseURL + "/sync", #"{"handler": "nosuch", "input": 1}"#)
        #expect(unknown.status == 404)
        #expect((unknown.json?["error"] as? [String: Any])?["code"] as? String == "unknown_handler")

        // Async: the failure is the callback's error, with the same fields.
        let asyncID = try stack.submit(#"{"handler": "fail", "input": {}, "callback_url": "http://127.0.0.1:\#(port)/ok/f"}"#)
        #expect(await receiver.wait(timeout: 20) { $0.contains { $0.webhookID == asyncID } })
        let call = try #require(receiver.calls.first { $0.webhookID == asyncID })
        let body = try #require(try JSONSerialization.jsonObject(with: Data(call.body)) as? [String: Any])
        #expect(body["status"] as? String == "failed")
        let callbackError = try #require(body["error"] as? [String: Any])
        #expect(callbackError["code"] as? String == "handler_failed")
        #expect(callbackError["exit_status"] as? Int == 3)
        #expect(callbackError["stderr_tail"] as? String == "no such page: 7\n")
        await receiver.stop()
    }

    @Test func aSyncStormOfASlowHandlerLeavesAsyncAndHealthzFast() async throws {
        let (stack, receiver, port) = try await Self.started(folder)
        // 20 callers of a 0.5 s handler hold every sync slot (10) and queue behind them.
        let storm = Task.detached {
            await withTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask { (try? HTTPClient(timeoutSeconds: 10).postJSON(stack.baseURL + "/sync", #"{"handler": "nap", "input": 1}"#))?.status ?? 0 }
                }
                return await group.reduce(into: [Int]()) { $0.append($1) }
            }
        }
        usleep(200_000)
        let client = HTTPClient(timeoutSeconds: 5)
        var slowest = 0.0
        for _ in 0..<10 {
            let started = Date()
            #expect(try client.get(stack.baseURL + "/healthz").status == 200)
            #expect(try client.postJSON(stack.baseURL + "/async", #"{"text": "x", "callback_url": "http://127.0.0.1:\#(port)/ok/s"}"#).status == 202)
            slowest = max(slowest, Date().timeIntervalSince(started))
        }
        let statuses = await storm.value
        #expect(statuses.contains(200))
        #expect(Set(statuses).isSubset(of: [200, 503]), "\(statuses)")
        // Generous for a shared 2-core machine; a blocked api pool would take the handler's 0.5 s or more.
        #expect(slowest < 0.4, "\(slowest) s for /healthz and /async together")
        await receiver.stop()
    }

    @Test func aFolderOthersCanWriteStopsTheStart() throws {
        let stack = try Stack(settings: Self.settings)
        chmod(folder, 0o777)
        var environment = stack.environment
        environment["WORKFCGI_HANDLERS_DIR"] = folder
        let run = try Stack.run(
            "/usr/bin/timeout",
            ["10", "/usr/bin/env", "-C", stack.directory.path] + environment.map { "\($0.key)=\($0.value)" }
                + [Stack.binDirectory.appendingPathComponent("workfcgi").path])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("\(folder) can be written by other users (mode 0777)"), "\(run.output)")
    }
}
