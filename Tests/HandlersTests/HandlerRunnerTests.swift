import Config
import Foundation
import Handlers
import Logging
import Testing
import WorkEngine

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// The runner with real programs in a real folder: what the contract promises, process by process.
@Suite(.serialized, .timeLimit(.minutes(2))) final class HandlerRunnerTests {
    let folder: String

    init() throws {
        var template = Array("/tmp/workfcgi-handlers-test-XXXXXX".utf8CString)
        folder = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    func install(_ name: String, _ script: String, mode: mode_t = 0o755) throws {
        let path = folder + "/" + name
        try script.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
    }

    func runner(timeout: String = "30s") throws -> HandlerRunner {
        let settings = try Settings(environment: ["WORKFCGI_HANDLERS_DIR": folder, "WORKFCGI_HANDLER_TIMEOUT": timeout]).handlers
        return try #require(try HandlerRunner.start(settings, logger: Logger(label: "test"), nice: 10))
    }

    func run(_ runner: HandlerRunner, _ name: String, _ input: JSONValue = .null) -> WorkOutcome {
        runner.run(handler: name, input: input, context: WorkContext(requestID: "01-test", mode: .async))
    }

    @Test func theResultIsStdoutAndTheInputIsStdin() throws {
        try install("echo", "#!/bin/sh\ncat\n")
        let outcome = run(try runner(), "echo", ["text": "hello", "n": [1, 2]])
        #expect(outcome.result == ["text": "hello", "n": [1, 2]])
        #expect(outcome.handlerRun?.outcome == .succeeded)
    }

    @Test func theRepositoryExamplesWork() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for name in ["checksum", "wordfreq"] {
            try install(name, try String(contentsOf: root.appendingPathComponent("handlers/\(name)"), encoding: .utf8))
        }
        let r = try runner()
        let freq = run(r, "wordfreq", ["text": "the cat and the hat", "top": 1])
        #expect(freq.result == ["words": 5, "top": [["the", 2]]])
        let sum = run(r, "checksum", ["a": 1])
        #expect(sum.result?["bytes"] == 7)
        #expect(sum.result?["request_id"] == "01-test")
        // A bad input: exit 2, and stderr says why.
        let bad = run(r, "wordfreq", [1])
        #expect(bad.handlerRun?.outcome == .exited(2))
        #expect(bad.handlerRun?.stderrTail.contains("\"text\" string") == true)
    }

    @Test func aNonZeroExitCarriesItsStatusAndStderr() throws {
        try install("three", "#!/bin/sh\necho 'the disk is on fire' >&2\necho '{}'\nexit 3\n")
        let outcome = run(try runner(), "three")
        #expect(outcome.result == nil)
        let document = try #require(outcome.error.flatMap(HandlerRun.errorDocument(stored:)))
        #expect(document["code"] == "handler_failed")
        #expect(document["exit_status"] == 3)
        #expect(document["stderr_tail"] == "the disk is on fire\n")
    }

    @Test func theEnvironmentHasOnlyTheDocumentedVariables() throws {
        try install("env", "#!/usr/bin/python3\nimport json, os\nprint(json.dumps(dict(os.environ)))\n")
        setenv("WORKFCGI_WEBHOOK_SECRET_TEST", "leak", 1)
        defer { unsetenv("WORKFCGI_WEBHOOK_SECRET_TEST") }
        let outcome = run(try runner(), "env")
        guard case .object(let env)? = outcome.result else {
            Issue.record("no environment: \(outcome)")
            return
        }
        #expect(env.keys.sorted() == HandlerRunner.environmentNames)
        #expect(env["WORKFCGI_MODE"] == "async")
        #expect(env["WORKFCGI_REQUEST_ID"] == "01-test")
        // Its working folder is its own, and gone afterwards.
        let tmp = try #require(env["TMPDIR"]?.stringValue)
        #expect(access(tmp, F_OK) != 0)
    }

    /// What a program leaves in its working folder goes with it, whatever the names' bytes and modes: a name
    /// that is not UTF-8 left the folder behind at every run, a folder closed to its owner, and a link.
    @Test func theWorkingFolderGoesWithOddNamesClosedFoldersAndLinks() throws {
        let outside = folder + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        try install(
            "litter",
            "#!/bin/sh\ncd \"$TMPDIR\"\nprintf x > \"$(printf 'a\\377b')\"\nmkdir -p 'c/d' && printf y > c/d/e && chmod 000 c/d c\n"
                + "ln -s \(outside) link\nprintf '\"%s\"' \"$TMPDIR\"\n")
        let outcome = run(try runner(), "litter")
        let tmp = try #require(outcome.result?.stringValue, "\(outcome)")
        #expect(access(tmp, F_OK) != 0, "the working folder is gone")
        #expect(access(outside, F_OK) == 0, "the link's target is not touched")
        let mode = try FileManager.default.attributesOfItem(atPath: outside)[.posixPermissions] as? Int
        #expect(mode == 0o755, "nor its mode")
    }

    @Test func aHandlerThatSleepsForeverIsKilledWithItsGrandchildren() throws {
        // Ignores SIGTERM (and so does its child), so only the SIGKILL after the grace ends them.
        try install("sleeper", "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho $! > \(folder)/grandchild.pid\nsleep 1000\n")
        let started = Date()
        let outcome = run(try runner(timeout: "500ms"), "sleeper")
        let took = Date().timeIntervalSince(started)
        #expect(outcome.handlerRun?.outcome == .timedOut(seconds: 0.5))
        #expect(outcome.handlerRun?.errorCode == "handler_timeout")
        #expect(took >= 0.5 + HandlerSettings.killGraceSeconds - 0.1 && took < 10, "\(took)")
        let pid = try #require(Int32(try String(contentsOfFile: folder + "/grandchild.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // Gone, or at most a zombie waiting for its new parent (the machine's init) to reap it: not running.
        let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
        #expect(state == nil || state == "Z", "grandchild \(pid) is \(state.map(String.init) ?? "?")")
    }

    @Test func aGigabyteOnStdoutIsCutAtTheBoundWithFlatMemory() throws {
        try install("flood", "#!/bin/sh\nhead -c 1073741824 /dev/zero\n")
        var before = rusage()
        getrusage(RUSAGE_SELF.rawValue, &before)
        let outcome = run(try runner(), "flood")
        var after = rusage()
        getrusage(RUSAGE_SELF.rawValue, &after)
        #expect(outcome.handlerRun?.outcome == .outputTooLarge(limit: Limits.resultBytes))
        // ru_maxrss is in KiB: the runner kept at most the 2 MiB bound (and a read buffer), never the gigabyte.
        #expect(after.ru_maxrss - before.ru_maxrss < 64 * 1024, "grew \(after.ru_maxrss - before.ru_maxrss) KiB")
    }

    @Test func outputThatIsNotJSONFails() throws {
        try install("text", "#!/bin/sh\necho hello\n")
        #expect(run(try runner(), "text").handlerRun?.errorCode == "handler_failed")
    }

    @Test func filesOthersCanWriteAreRefusedAndNamesAreChecked() throws {
        try install("ok", "#!/bin/sh\necho 1\n")
        try install("open", "#!/bin/sh\necho 1\n", mode: 0o777)
        try install("Bad.Name", "#!/bin/sh\necho 1\n")
        try install("plain", "#!/bin/sh\necho 1\n", mode: 0o644)
        let scan = try HandlerRegistry.scan(folder)
        #expect(scan.handlers.keys.sorted() == ["ok"])
        let open = try #require(scan.skipped.first { $0.name == "open" })
        #expect(open.refused)
        #expect(open.reason.contains("can be written by other users"))
        #expect(scan.skipped.first { $0.name == "Bad.Name" }?.refused == false)
        #expect(scan.skipped.first { $0.name == "plain" }?.refused == false)
        // Made writable after the scan: refused at the run.
        let r = try runner()
        chmod(folder + "/ok", 0o777)
        #expect(run(r, "ok").handlerRun?.outcome == .notStarted("\(folder)/ok can be written by other users (mode 0777): chmod go-w it, after checking what it is"))
    }

    @Test func aFolderOthersCanWriteIsRefusedAtStart() throws {
        chmod(folder, 0o777)
        #expect(throws: (any Error).self) { try runner() }
    }

    @Test func aFolderMadeWritableByOthersIsRefusedAtReload() throws {
        try install("ok", "#!/bin/sh\necho 1\n")
        try install("open", "#!/bin/sh\necho 1\n", mode: 0o777)
        let r = try runner()
        #expect(r.registry.listing.scan.skipped.map(\.name) == ["open"])
        chmod(folder, 0o777)
        r.registry.reload()
        #expect(!r.isInstalled("ok"))
        #expect(r.registry.listing.refusedFolder?.contains("can be written by other users (mode 0777)") == true)
        chmod(folder, 0o700)
        r.registry.reload()
        #expect(r.isInstalled("ok"))
        #expect(r.registry.listing.refusedFolder == nil)
    }

    @Test func theTallyCountsRunsFailuresAndTimeoutsByHandlerAndMode() throws {
        try install("ok", "#!/bin/sh\necho 1\n")
        try install("bad", "#!/bin/sh\nexit 3\n")
        try install("slow", "#!/bin/sh\nsleep 100\n")
        let r = try runner(timeout: "200ms")
        _ = run(r, "ok")
        _ = r.run(handler: "ok", input: .null, context: WorkContext(requestID: "01-test", mode: .sync))
        _ = run(r, "bad")
        _ = run(r, "slow")
        let tally = r.tally
        #expect(tally.counts[.init(handler: "ok", mode: .async)]?.runs == 1)
        #expect(tally.counts[.init(handler: "ok", mode: .sync)]?.runs == 1)
        #expect(tally.counts[.init(handler: "bad", mode: .async)]?.failures == 1)
        let slow = try #require(tally.counts[.init(handler: "slow", mode: .async)])
        #expect((slow.runs, slow.failures, slow.timeouts) == (1, 1, 1))
        #expect(try #require(slow.quantile(0.5)) >= 0.2)
        // The heartbeat's encoding reads back the same, and merging adds.
        #expect(HandlerTally(json: tally.json) == tally)
        #expect(tally.merged(with: tally).counts[.init(handler: "ok", mode: .sync)]?.runs == 2)
    }

    @Test func aTallyFromTheDatabaseDropsWhatIsNotAHandlersName() throws {
        var good = HandlerTally()
        good.record(HandlerRun(handler: "ok", outcome: .succeeded), mode: .async, seconds: 0.01)
        guard case .array(var items) = good.json, case .object(var entry) = items[0] else { Issue.record("not an array"); return }
        entry["handler"] = "x\"} 1\nevil{"
        items.append(.object(entry))
        #expect(HandlerTally(json: .array(items)) == good)
        #expect(HandlerTally(json: "nonsense") == HandlerTally())
    }

    @Test func aNewHandlerIsSeenOnceTheFolderChanged() throws {
        let r = try runner()
        #expect(!r.isInstalled("late"))
        try install("late", "#!/bin/sh\necho 2\n")
        try waitUntil { r.isInstalled("late") }
        #expect(run(r, "late").result == 2)
        unlink(folder + "/late")
        r.registry.reload()
        #expect(!r.isInstalled("late"))
    }

    func waitUntil(_ condition: () -> Bool) throws {
        for _ in 0..<30 where !condition() { usleep(100_000) }
        #expect(condition())
    }
}
