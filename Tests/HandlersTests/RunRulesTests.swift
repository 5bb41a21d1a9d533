import Handlers
import Testing
import WorkEngine

@Suite struct RunRulesTests {
    @Test func killScheduleTermsAtTheTimeoutThenKillsAfterTheGrace() {
        let schedule = KillSchedule(timeout: 30, grace: 2)
        #expect(schedule.step(elapsed: 0, sent: nil) == .wait(seconds: 30))
        #expect(schedule.step(elapsed: 29.5, sent: nil) == .wait(seconds: 0.5))
        #expect(schedule.step(elapsed: 30, sent: nil) == .terminate)
        #expect(schedule.step(elapsed: 31, sent: .terminate) == .wait(seconds: 1))
        #expect(schedule.step(elapsed: 32, sent: .terminate) == .kill)
        #expect(schedule.step(elapsed: 40, sent: .kill) == .wait(seconds: 0.05))
    }

    @Test func boundedOutputKeepsNothingPastTheBound() {
        var out = BoundedOutput(limit: 10)
        let first = out.append(Array("12345".utf8)), second = out.append(Array("67890".utf8))
        #expect(first && second && !out.overflowed)
        let third = out.append([0x41])
        #expect(!third && out.overflowed)
        #expect(out.bytes == Array("1234567890".utf8))
        let fourth = out.append([0x41])
        #expect(!fourth)
        #expect(out.bytes.count == 10)
    }

    @Test func tailBufferKeepsTheLastBytes() {
        var tail = TailBuffer(capacity: 4)
        tail.append(Array("abc".utf8))
        tail.append(Array("defg".utf8))
        #expect(tail.text == "defg")
        #expect(tail.dropped == 3)
    }

    func end(_ termination: RunEnd.Termination, stdout: String = "", timedOut: Bool = false, overflow: Bool = false) -> RunEnd {
        var out = BoundedOutput(limit: 16)
        _ = out.append(Array(stdout.utf8))
        if overflow { _ = out.append([UInt8](repeating: 0x20, count: 17)) }
        var err = TailBuffer(capacity: 8)
        err.append(Array("oops".utf8))
        return RunEnd(termination: termination, timedOut: timedOut, stdout: out, stderr: err)
    }

    @Test func verdicts() {
        let ok = RunVerdict.decide(end(.exited(0), stdout: #"{"a": 1}"#), handler: "h", timeout: 5)
        #expect(ok.result == ["a": 1])
        #expect(ok.error == nil)
        #expect(ok.handlerRun?.outcome == .succeeded)

        let three = RunVerdict.decide(end(.exited(3), stdout: "{}"), handler: "h", timeout: 5)
        #expect(three.result == nil)
        #expect(three.handlerRun?.outcome == .exited(3))
        let document = three.error.flatMap(HandlerRun.errorDocument(stored:))
        #expect(document?["code"] == "handler_failed")
        #expect(document?["exit_status"] == 3)
        #expect(document?["stderr_tail"] == "oops")

        // The timeout and the bound decide whatever the exit: a killed program's partial stdout is no result.
        let slow = RunVerdict.decide(end(.signalled(15), stdout: "{}", timedOut: true), handler: "h", timeout: 5)
        #expect(slow.handlerRun?.outcome == .timedOut(seconds: 5))
        #expect(slow.handlerRun?.errorCode == "handler_timeout")
        let big = RunVerdict.decide(end(.exited(0), stdout: "[1,", overflow: true), handler: "h", timeout: 5)
        #expect(big.handlerRun?.outcome == .outputTooLarge(limit: 16))

        let empty = RunVerdict.decide(end(.exited(0)), handler: "h", timeout: 5)
        #expect(empty.handlerRun?.outcome == .invalidOutput("stdout is empty"))
        let text = RunVerdict.decide(end(.exited(0), stdout: "hello"), handler: "h", timeout: 5)
        guard case .invalidOutput? = text.handlerRun?.outcome else {
            Issue.record("not JSON must be invalid output")
            return
        }
        let killed = RunVerdict.decide(end(.signalled(9)), handler: "h", timeout: 5)
        #expect(killed.handlerRun?.outcome == .signalled(9))
        #expect(killed.handlerRun?.exitStatus == nil)
    }

    @Test func handlerNames() {
        for good in ["a", "resize", "pdf-2", "x_y", "9lives"] { #expect(HandlerName.isValid(good), "\(good)") }
        for bad in ["", "-x", "_x", ".hidden", "Resize", "a b", "a/b", "é", String(repeating: "a", count: 65)] {
            #expect(!HandlerName.isValid(bad), "\(bad)")
        }
    }

    @Test func theParserTakesAHandlerAndItsInput() throws {
        let parsed = try RequestParser.parse(body: Array(#"{"handler": "wordfreq", "input": {"text": "a b"}}"#.utf8), mode: .sync)
        #expect(parsed.spec == .handler(name: "wordfreq", input: ["text": "a b"]))
        #expect(JobSpec(stored: parsed.spec.stored) == parsed.spec)
        let cases: [(String, ValidationError.Code)] = [
            (#"{"handler": "wordfreq"}"#, .missingField),
            (#"{"handler": "../bin/sh", "input": 1}"#, .outOfRange),
            (#"{"handler": 3, "input": 1}"#, .invalidType),
            (#"{"handler": "a", "input": 1, "text": "x"}"#, .unknownField),
            (#"{"handler": "a", "input": 1, "op": "hash"}"#, .ambiguousOp),
            (#"{"handler": "a", "input": 1, "callback_url": "http://x/"}"#, .unknownField),
        ]
        for (body, code) in cases {
            #expect(throws: ValidationError.self, "\(body)") { try RequestParser.parse(body: Array(body.utf8), mode: .sync) }
            do {
                _ = try RequestParser.parse(body: Array(body.utf8), mode: .sync)
            } catch {
                #expect(error.code == code, "\(body)")
            }
        }
        let async = try RequestParser.parse(body: Array(#"{"handler": "a", "input": null, "callback_url": "http://x/"}"#.utf8), mode: .async)
        #expect(async.callbackURL == "http://x/")
    }
}
