import ArgumentParser
import Foundation
import Harness
import Lifecycle

/// Storms workfcgi through nginx with sync and/or async requests, receives the async callbacks itself
/// (verifying their signatures), and reports what happened: counts by outcome and error code, latency
/// percentiles of successes and refusals apart, goodput, callbacks N/N. Closed loop (`--concurrency`) or
/// open loop (`--rate`, latency from each request's intended send time).
@main
struct LoadGen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen", abstract: "Sync vs async storms against workfcgi, with the callbacks received here.",
        discussion: """
            Without options: --mode both --requests 200 --concurrency 50 against http://127.0.0.1:8080, the
            callbacks to a receiver on 127.0.0.1:9100, signatures checked with the secret from --secret,
            $WORKFCGI_WEBHOOK_SECRET or the secret file beside the database (run/webhook-secret).
            Examples (from the repository root, with the stack up as in the README):
              # scripts/demo's storm: 60 sync clients on a ~1 s op beside a steady stream of 4 async jobs a second
              loadgen --mode mixed --duration 15s --concurrency 60 --op compute --operation prime --complexity 5 \\
                --async-rate 4 --source-addresses 127.0.0.10-127.0.0.69 --expect "callbacks=all"
              # 200 async jobs a second for 10 s from 10 addresses (nginx allows 100 r/s per address)
              loadgen --mode async --rate 200 --duration 10s --source-addresses 127.0.0.10-127.0.0.19 \\
                --expect "async.ack.p99<50ms,async.errors=0,callbacks=all"
            Exit status: 0; 1 when an --expect term fails or a series had no success at all; 2 for a bad command line.
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case sync, async, both, mixed, get }
    enum Op: String, ExpressibleByArgument, CaseIterable { case hash, text, report, compute }

    @Option(help: "Base URL of nginx in front of workfcgi.") var url = "http://127.0.0.1:8080"
    @Option(help: "sync, async, both (one after the other), mixed (both at the same time), or get (GET --path, e.g. to compare with wrk).")
    var mode: Mode = .both
    @Option(help: "--mode get: the path to GET.") var path = "/healthz"
    @Option(help: "The work, with --iterations/--complexity/--records/--text (instead of --body).") var op: Op?
    @Option(help: "A handler (WORKFCGI_HANDLERS_DIR) to run instead of a built-in op, given --input.") var handler: String?
    @Option(help: "--handler: its input, any JSON.") var input = "null"
    @Option(help: "hash: iterations.") var iterations = 1
    @Option(help: "compute: complexity 1-10 (operation from --operation).") var complexity = 1
    @Option(help: "compute: hash, prime, matrix or transform.") var operation = "hash"
    @Option(help: "report: records.") var records = 10
    @Option(help: "text: the text.") var text = "hello load"
    @Option(help: "The JSON body of every request (async adds callback_url).") var body = #"{"payload":{"operation":"hash","complexity":1}}"#
    @Option(help: "Requests per series (ignored with --duration).") var requests = 200
    @Option(help: "How long each series sends, e.g. 30s or 2m (instead of --requests).") var duration: String?
    @Option(help: "Connections per series; in a closed loop also the requests in flight.") var concurrency = 50
    @Option(help: "Open loop: requests per second per series, latency counted from each intended send time.") var rate: Double?
    @Option(help: "Open loop for the async series alone (e.g. a steady async stream beside a closed-loop sync storm in --mode mixed).")
    var asyncRate: Double?
    @Option(help: "Requests per series sent first and not counted.") var warmup = 0
    @Option(help: "Seconds before a request counts as timed out.") var timeout = 60.0
    @Option(help: "Loopback client addresses to spread connections over, e.g. 127.0.0.10-127.0.0.60 (nginx limits per address).")
    var sourceAddresses: String?
    @Option(help: "Port of the callback receiver on 127.0.0.1 (0 picks a free one; the default callback ports are 80, 443, 8000-9999).")
    var receiverPort: UInt16 = 9100
    @Option(help: "Webhook secret to verify callback signatures with (default: $WORKFCGI_WEBHOOK_SECRET).") var secret: String?
    @Option(help: "Fraction of callbacks the receiver answers 500 (deliveryd retries them).") var receiverFailRate = 0.0
    @Option(help: "Milliseconds the receiver waits before answering.") var receiverDelay = 0
    @Option(help: "Seconds to wait for outstanding callbacks after sending.") var callbackTimeout = 120.0
    @Option(help: "Write the figures and percentile spectra as JSON.") var json: String?
    @Option(help: "Write a self-contained HTML report with charts.") var report: String?
    @Option(help: #"Conditions that fail the run, e.g. "async.ack.p99<50ms,callbacks=all,sync.503>0"."#) var expect: String?
    @Flag(help: "No progress line.") var quiet = false

    func validate() throws {
        guard requests > 0, concurrency > 0, timeout > 0 else { throw ValidationError("--requests, --concurrency and --timeout must be positive") }
        for r in [rate, asyncRate].compactMap({ $0 }) where !(r > 0 && r <= 1_000_000) {
            throw ValidationError("--rate and --async-rate must be between 0 and 1,000,000")
        }
        if let duration, Self.seconds(duration) == nil { throw ValidationError("--duration: '\(duration)' is not like 30s, 2m or 500ms") }
        if handler != nil, (try? JSONSerialization.jsonObject(with: Data(input.utf8), options: .fragmentsAllowed)) == nil {
            throw ValidationError("--input must be JSON")
        }
        if op == nil, handler == nil, !((try? JSONSerialization.jsonObject(with: Data(body.utf8))) is [String: Any]) {
            throw ValidationError("--body must be a JSON object")
        }
        if let sourceAddresses, Self.addresses(sourceAddresses) == nil {
            throw ValidationError("--source-addresses: give loopback addresses like 127.0.0.10-127.0.0.60 or 127.0.0.2,127.0.0.3")
        }
        if let expect { do { _ = try Expectation.parse(expect) } catch { throw ValidationError("--expect: \(error)") } }
        guard (0...1).contains(receiverFailRate) else { throw ValidationError("--receiver-fail-rate is a fraction, 0 to 1") }
    }

    static func seconds(_ text: String) -> Double? {
        for (suffix, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).flatMap { $0 > 0 ? $0 * factor : nil }
        }
        return Double(text).flatMap { $0 > 0 ? $0 : nil }
    }

    /// 127.a.b.c-127.a.b.d ranges and commas, loopback only (a storm from "many clients" on this machine).
    static func addresses(_ text: String) -> [String]? {
        var out: [String] = []
        for part in text.split(separator: ",") {
            let ends = part.split(separator: "-").map { $0.split(separator: ".").compactMap { UInt8($0) } }
            guard ends.allSatisfy({ $0.count == 4 && $0[0] == 127 }), let first = ends.first, let last = ends.last, ends.count <= 2,
                first[0...2] == last[0...2], first[3] <= last[3]
            else { return nil }
            for d in first[3]...last[3] { out.append("127.\(first[1]).\(first[2]).\(d)") }
        }
        return out.isEmpty || out.count > 4096 ? nil : out
    }

    var workBody: [String: Any] {
        if let handler {
            return ["handler": handler, "input": (try? JSONSerialization.jsonObject(with: Data(input.utf8), options: .fragmentsAllowed)) ?? NSNull()]
        }
        switch op {
        case .hash?: return ["input_data": "loadgen", "iterations": iterations]
        case .text?: return ["text": text]
        case .report?: return ["records": records]
        case .compute?: return ["payload": ["operation": operation, "complexity": complexity]]
        case nil: return (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
        }
    }

    func run() async throws {
        let sources = sourceAddresses.flatMap(Self.addresses) ?? []
        let engine = Engine(timeout: timeout, sources: sources)
        let receiver = try CallbackReceiver(port: receiverPort, failRate: receiverFailRate, delayMilliseconds: receiverDelay)
        let wantsAsync = mode == .async || mode == .both || mode == .mixed
        let port = wantsAsync ? try await receiver.start() : 0
        var asyncObject = workBody
        asyncObject["callback_url"] = "http://127.0.0.1:\(port)/ok/loadgen"
        let pacing: Pacing = rate.map { .open(rate: $0) } ?? .closed(concurrency: concurrency)
        let seconds = duration.flatMap(Self.seconds)
        func series(_ name: String, _ path: String, _ object: [String: Any], ok: Int, pacing: Pacing = pacing) -> Engine.Series {
            let bytes = Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
            return Engine.Series(
                name: name, url: url + path, body: bytes, pacing: pacing, requests: seconds == nil ? requests : nil, duration: seconds,
                okStatus: ok, connections: concurrency)
        }
        let sync = series("sync response", "/sync", workBody, ok: 200)
        let ack = series("async ack", "/async", asyncObject, ok: 202, pacing: asyncRate.map { .open(rate: $0) } ?? pacing)
        var probe = series("GET \(path)", path, [:], ok: 200)
        probe.get = true
        let plans: [[Engine.Series]] = switch mode {
        case .get: [[probe]]
        case .sync: [[sync]]
        case .async: [[ack]]
        case .both: [[sync], [ack]]
        case .mixed: [[sync, ack]]
        }
        var pacingText = rate.map { "open loop at \($0) req/s per series" } ?? "closed loop, \(concurrency) in flight per series"
        if let asyncRate { pacingText += ", async open loop at \(asyncRate) req/s" }
        let extent = duration.map { "for \($0)" } ?? "\(requests) requests per series"
        if CommandLine.arguments.count == 1 {
            FileHandle.standardError.write(Data("loadgen: no options given: the defaults below (loadgen --help for the rest)\n".utf8))
        }
        FileHandle.standardError.write(Data(
            "loadgen: \(mode.rawValue), \(pacingText), \(extent), body \(String(decoding: sync.body, as: UTF8.self))\(sources.isEmpty ? "" : ", from \(sources.count) addresses")\n".utf8))
        let verification = wantsAsync ? WebhookSecretSource.find(option: secret) : .none(why: "")
        if wantsAsync { FileHandle.standardError.write(Data("loadgen: \(verification.summary)\n".utf8)) }

        let live = !quiet && isatty(STDERR_FILENO) == 1
        var stats: [String: SeriesStats] = [:]
        var accepted: [String: Date] = [:]
        let runStarted = Date()
        for group in plans {
            if warmup > 0 {
                _ = engine.run(group.map { var s = $0; s.requests = warmup; s.duration = nil; return s }) { _ in }
            }
            let began = Date()
            let results = engine.run(group) { p in
                guard live else { return }
                let received = Set(receiver.delivered.map(\.webhookID)).count
                let line = String(format: "\r  %5.1fs  sent %d  %.0f/s  errors %d  callbacks %d ", p.elapsed, p.sent, Double(p.sent) / max(p.elapsed, 0.001), p.errors, received)
                FileHandle.standardError.write(Data(line.utf8))
            }
            let elapsed = Date().timeIntervalSince(began)
            for (i, s) in group.enumerated() {
                var st = SeriesStats(name: s.name)
                st.seconds = elapsed
                for r in results where r.series == i {
                    st.record(r.outcome)
                    if s.okStatus == 202, let id = r.requestID, accepted[id] == nil { accepted[id] = r.sentAt }
                }
                stats[s.name] = st
            }
        }
        if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }

        var callbacks = CallbackSummary(expected: accepted.count)
        if wantsAsync {
            let ids = Set(accepted.keys)
            if !ids.isEmpty {
                if live { FileHandle.standardError.write(Data("  waiting for \(ids.count) callbacks (up to \(Int(callbackTimeout)) s)\n".utf8)) }
                await receiver.wait(timeout: callbackTimeout) { calls in
                    Set(calls.filter { (200...299).contains($0.answered) }.map(\.webhookID)).isSuperset(of: ids)
                }
            }
            callbacks = CallbackSummary.from(
                calls: receiver.calls, accepted: accepted, check: verification.check, runStarted: runStarted)
            if case .none(let why) = verification { callbacks.uncheckedBecause = why }
            stats["async callback"] = callbacks.stats
            await receiver.stop()
        }

        let order = ["GET \(path)", "sync response", "async ack", "async callback"].filter { stats[$0] != nil }
        let rows = order.compactMap { stats[$0] }
        print(Report.table(rows, callbacks: callbacks))
        print(Report.conclusion(sync: stats["sync response"], ack: stats["async ack"], callbacks: callbacks))
        let info = RunInfo(
            started: runStarted, target: url, version: BuildInfo.versionLine, arguments: Array(CommandLine.arguments.dropFirst()),
            effective: "\(mode.rawValue), \(pacingText), \(extent), body \(String(decoding: mode == .async ? ack.body : sync.body, as: UTF8.self))"
                + (sources.isEmpty ? "" : ", from \(sources.count) addresses") + ", timeout \(Axis.label(timeout)) s")
        if let json {
            try Report.json(rows, callbacks: callbacks, mode: mode.rawValue, pacing: pacingText, info: info).write(to: URL(fileURLWithPath: json))
        }
        if let report {
            try Data(Report.html(rows, callbacks: callbacks, title: "loadgen: \(mode.rawValue), \(pacingText), \(extent)", info: info).utf8)
                .write(to: URL(fileURLWithPath: report))
            print("report: \(report)")
        }
        if let expect {
            let failures = try Expectation.parse(expect).compactMap { e in
                e.failure(stats[e.series == "sync" ? "sync response" : e.series == "async" ? "async ack" : "async callback"],
                    callbacks: (callbacks.received, callbacks.expected))
            }
            if !failures.isEmpty {
                print("expectations failed:\n  " + failures.joined(separator: "\n  "))
                throw ExitCode(1)
            }
            print("expectations met: \(expect)")
        }
        // A series that sent and got nothing back as asked fails the run, whatever else succeeded.
        let empty = rows.filter { $0.name != "async callback" && $0.sent > 0 && $0.ok == 0 }
        if !empty.isEmpty {
            for r in empty { print("loadgen: \(Self.noSuccess(r, url: url))") }
            throw ExitCode(1)
        }
    }

    /// Why a series had no success, with the fix when the answer names it.
    static func noSuccess(_ r: SeriesStats, url: String) -> String {
        let top = r.byCode.max { $0.value.count < $1.value.count }
        var text = "no \(r.name) succeeded"
        if let (code, seen) = top {
            text += " (\(seen.count) of \(r.sent) × \(seen.status) \(code))"
        } else if r.connectionErrors > 0 {
            text += " (\(r.connectionErrors) connection errors: is the stack up at \(url)?)"
        } else if r.timeouts > 0 {
            text += " (\(r.timeouts) timeouts)"
        }
        if top?.key == "invalid_callback_url" {
            text += ": the service refuses callbacks to this machine, where loadgen's receiver is. Open loopback to it"
            text += " (WORKFCGI_CALLBACK_ALLOW_CIDRS=127.0.0.1/32 for both daemons; installed service: in /etc/workfcgi/workfcgi.env,"
            text += " then systemctl restart workfcgi deliveryd), or run --mode sync"
        }
        return text
    }
}

/// The webhook secret loadgen verifies callback signatures with: --secret, else $WORKFCGI_WEBHOOK_SECRET, else
/// the secret file deliveryd writes beside its database ($WORKFCGI_WEBHOOK_SECRET_FILE, else beside
/// $WORKFCGI_DB_PATH, else in $WORKFCGI_RUN_DIR or run/; for a checkout linked to an installed service,
/// /var/lib/NAME, readable by root).
enum WebhookSecretSource {
    case given(SignatureCheck, from: String)
    case none(why: String)

    var check: SignatureCheck? { if case .given(let check, _) = self { check } else { nil } }

    var summary: String {
        switch self {
        case .given(_, let from): "checking callback signatures with the secret from \(from)"
        case .none(let why): "not checking callback signatures: \(why)"
        }
    }

    static func find(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> WebhookSecretSource {
        if let option { return SignatureCheck(secret: option).map { .given($0, from: "--secret") } ?? .none(why: "--secret is not whsec_<base64>") }
        if let value = environment["WORKFCGI_WEBHOOK_SECRET"], !value.isEmpty {
            return SignatureCheck(secret: value).map { .given($0, from: "$WORKFCGI_WEBHOOK_SECRET") }
                ?? .none(why: "$WORKFCGI_WEBHOOK_SECRET is not whsec_<base64>")
        }
        var tried: [String] = []
        for path in candidates(environment) where !tried.contains(path) {
            tried.append(path)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return SignatureCheck(secret: secret).map { .given($0, from: path) } ?? .none(why: "\(path) holds no whsec_ secret")
        }
        return .none(why: "no --secret, no $WORKFCGI_WEBHOOK_SECRET, and no readable secret file (\(tried.joined(separator: ", ")))")
    }

    static func candidates(_ environment: [String: String]) -> [String] {
        if let file = environment["WORKFCGI_WEBHOOK_SECRET_FILE"], !file.isEmpty { return [file] }
        var out: [String] = []
        if let db = environment["WORKFCGI_DB_PATH"], !db.isEmpty {
            out.append((db.contains("/") ? String(db[..<db.lastIndex(of: "/")!]) : ".") + "/webhook-secret")
        }
        let run = environment["WORKFCGI_RUN_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "run"
        // scripts/install-systemd links run/api.sock to /run/NAME/api.sock; NAME's secret is in /var/lib/NAME.
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: run + "/api.sock") {
            let parts = target.split(separator: "/")
            if parts.count >= 3, parts[0] == "run" { out.append("/var/lib/\(parts[1])/webhook-secret") }
        }
        out.append(run + "/webhook-secret")
        return out
    }
}

/// The async callbacks as the receiver saw them, against the jobs that were acknowledged.
struct CallbackSummary: Sendable {
    var expected: Int
    var received = 0
    var duplicates = 0
    var badSignatures = 0
    var signaturesChecked = false
    /// Why signatures were not checked, for the table.
    var uncheckedBecause = "no --secret"
    var stats = SeriesStats(name: "async callback")

    var missing: Int { expected - received }

    static func from(calls: [ReceivedCallback], accepted: [String: Date], check: SignatureCheck?, runStarted: Date) -> CallbackSummary {
        var summary = CallbackSummary(expected: accepted.count)
        summary.signaturesChecked = check != nil
        var seen: Set<String> = []
        var last = runStarted
        for call in calls where (200...299).contains(call.answered) {
            guard let sent = accepted[call.webhookID] else { continue }
            if let check, !check.verifies(id: call.webhookID, timestamp: call.timestamp, body: call.body, header: call.signature) {
                summary.badSignatures += 1
            }
            if !seen.insert(call.webhookID).inserted {
                summary.duplicates += 1
                continue
            }
            let micros = UInt64(max(0, call.receivedAt.timeIntervalSince(sent)) * 1e6)
            summary.stats.record(Outcome(kind: .success, micros: micros, at: call.receivedAt.timeIntervalSince(runStarted)))
            last = max(last, call.receivedAt)
        }
        summary.received = seen.count
        summary.stats.sent = accepted.count
        summary.stats.seconds = last.timeIntervalSince(runStarted)
        return summary
    }
}
