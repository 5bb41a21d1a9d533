import FastCGI
import Foundation
import JSON
import Store
import WorkEngine

/// What is happening now (GET /status, /ui's "Now" panel, the live gauges of /metrics), read in one go:
/// this process's /sync computations and pools from memory, deliveryd's jobs in hand, the oldest pending job and
/// the storage from the database with bounded queries.
struct NowView: Sendable {
    /// How many jobs in hand are listed at most (the page and /status stay small whatever deliveryd holds).
    static let inHandLimit = 50

    var at: Int64
    var sync: [SyncInFlight.Entry]
    var syncInFlight: Int
    var syncSlots: Int
    /// /sync requests that found every slot busy when they arrived (PHP-FPM's "max children reached").
    var syncSlotsFull: Int
    var pools: [FastCGIServer.Status]
    /// nil: the database did not answer.
    var inHand: [JobInHand]?
    /// nil: the database did not answer.
    var nodes: DeliverydNodes?
    var deliverydRunning: Bool?
    var backlog: Int?
    var backlogLimit: Int
    var oldestPendingAt: Int64?
    var storage: StorageUsage?
    var storageState: String?

    /// When the node took the job (its claim; heartbeats renew the lease, not this).
    func claimedAt(_ job: JobInHand) -> Int64 { job.leasedAt }

    /// The name of the node holding the job; nil when its row is gone.
    func node(_ job: JobInHand) -> String? { nodes?.names[job.owner] }

    var json: JSONValue {
        let n = { (x: Int) in JSONValue.number(Double(x)) }
        let opt = { (x: Int64?) in x.map { JSONValue.number(Double($0)) } ?? .null }
        var computations: [JSONValue] = []
        for e in sync {
            var o: [String: JSONValue] = [
                "request_id": .string(e.requestID), "op": .string(e.op), "age_ms": .number(Double(max(0, at - e.startedAt))),
                "started_at": .string(Timestamp.iso8601(millis: e.startedAt)),
            ]
            if let h = e.handler { o["handler"] = .string(h) }
            computations.append(.object(o))
        }
        let jobs: JSONValue = inHand.map { list in
            .array(
                list.map { j in
                    [
                        "request_id": .string(j.id), "op": .string(j.op.rawValue), "status": .string(j.status.rawValue), "attempts": n(j.attempts),
                        "age_ms": .number(Double(max(0, at - claimedAt(j)))), "claimed_at": .string(Timestamp.iso8601(millis: claimedAt(j))),
                        "lease_until": .string(Timestamp.iso8601(millis: j.leaseUntil)), "node": node(j).map(JSONValue.string) ?? .null,
                    ]
                })
        } ?? .null
        let pools: [JSONValue] = self.pools.map { p in
            [
                "pool": .string(p.name), "threads": n(p.threads), "busy": n(p.busy), "queued": p.queued.map(n) ?? .null,
                "queue_limit": p.queueLimit.map(n) ?? .null,
            ]
        }
        return [
            "at": .string(Timestamp.iso8601(millis: at)),
            "sync": [
                "in_flight": n(syncInFlight), "slots": n(syncSlots), "slots_full_total": n(syncSlotsFull), "computations": .array(computations),
            ],
            "pools": .array(pools),
            "deliveryd": [
                "running": deliverydRunning.map(JSONValue.bool) ?? .null, "jobs_in_hand": jobs, "listed_at_most": n(Self.inHandLimit),
                "nodes": nodes?.json ?? .null,
            ],
            "backlog": [
                "jobs": backlog.map(n) ?? .null, "limit": n(backlogLimit),
                "oldest_pending_age_ms": oldestPendingAt.map { .number(Double(max(0, at - $0))) } ?? .null,
            ],
            "storage": storage.map { s in
                [
                    "state": storageState.map(JSONValue.string) ?? .null, "used_bytes": .number(Double(s.usedBytes)),
                    "reserved_bytes": .number(Double(s.reservedBytes)), "bound_bytes": opt(s.boundBytes),
                ]
            } ?? .null,
        ]
    }
}

/// The last hour as /ui draws it: workfcgi's answers and refusals (in memory, empty after a restart) and
/// deliveryd's failed callback attempts (from the attempts table).
struct HistoryView: Sendable {
    var now: Int64
    /// Answers (status < 400) per minute by route.
    var answers: [(start: Int64, counts: [String: Int])]
    /// Refusals per minute by error code.
    var refusals: [(start: Int64, counts: [String: Int])]
    /// nil: the database did not answer.
    var failures: [MinuteCount]?
}

extension OperatorPage {
    static func seconds(ms: Int64) -> String {
        ms < 1000 ? "\(ms) ms" : ms < 120_000 ? String(format: "%.1f s", Double(ms) / 1000) : "\(ms / 60_000) min"
    }

    static func nowSection(_ now: NowView) -> String {
        var body = "<h2 id=now>Now</h2><div class=cards>"
        for p in now.pools {
            let queued = p.queued.map { "\($0) waiting (backlog \(p.queueLimit ?? 0))" } ?? "queue not readable"
            body += "<div class=card><b>\(p.busy) / \(p.threads)</b>\(HTML.escape(p.name)) pool threads busy<br><small>\(queued)</small></div>"
        }
        body += "<div class=card><b\(now.syncSlotsFull > 0 ? " class=bad" : "")>\(now.syncSlotsFull)</b>times every sync slot was busy"
        body += "<br><small>(max children reached)</small></div>"
        let oldest = now.oldestPendingAt.map { seconds(ms: max(0, now.at - $0)) } ?? (now.backlog == nil ? "?" : "none pending")
        body += "<div class=card><b>\(HTML.escape(oldest))</b>oldest pending job</div>"
        let backlog = now.backlog.map { "\($0) / \(now.backlogLimit)" } ?? "?"
        body += "<div class=card><b>\(backlog)</b>backlog against WORKFCGI_BACKLOG_LIMIT</div></div>"

        body += "<h3>Sync computations running (\(now.syncInFlight) of \(now.syncSlots) slots)</h3>"
        body += "<table id=sync-now><tr><th>request</th><th>op</th><th>running for</th></tr>"
        for e in now.sync {
            let op = e.handler.map { "handler <code>\(HTML.escape($0))</code>" } ?? HTML.escape(e.op)
            body += "<tr><td><code>\(HTML.escape(e.requestID))</code></td><td>\(op)</td><td>\(seconds(ms: max(0, now.at - e.startedAt)))</td></tr>"
        }
        if now.sync.isEmpty { body += "<tr><td colspan=3>none</td></tr>" }
        body += "</table>"

        body += "<h3>deliveryd nodes</h3><table id=deliveryd-nodes><tr><th>node</th><th>state</th><th>last heartbeat</th>"
        body += "<th>jobs in hand</th><th>open circuits</th><th>pid</th></tr>"
        if let nodes = now.nodes {
            for n in nodes.nodes {
                let state = n.liveness == .alive ? "alive" : "<b class=bad>\(n.liveness.rawValue)</b>"
                body += "<tr><td>\(HTML.escape(n.status.name))</td><td>\(state)</td><td>\(seconds(ms: n.ageMs)) ago</td>"
                body += "<td>\(n.liveness == .alive ? n.status.activeWorkers : 0)</td><td>\(n.liveness == .alive ? n.status.circuits.count : 0)</td>"
                body += "<td>\(n.status.pid)</td></tr>"
            }
            if nodes.nodes.isEmpty { body += "<tr><td colspan=6>none has run</td></tr>" }
        } else {
            body += "<tr><td colspan=6>unknown (the database did not answer)</td></tr>"
        }
        body += "</table>"

        body += "<h3>Jobs deliveryd has in hand</h3><table id=deliveryd-now><tr><th>request</th><th>op</th><th>status</th>"
        body += "<th>attempts</th><th>node</th><th>in hand for</th></tr>"
        if let list = now.inHand {
            for j in list {
                body += "<tr><td><a href=\"/ui/requests/\(HTML.escape(j.id))\"><code>\(HTML.escape(j.id))</code></a></td><td>\(j.op.rawValue)</td>"
                body += "<td>\(j.status.rawValue)</td><td>\(j.attempts)</td><td>\(HTML.escape(now.node(j) ?? "?"))</td>"
                body += "<td>\(seconds(ms: max(0, now.at - now.claimedAt(j))))</td></tr>"
            }
            if list.isEmpty { body += "<tr><td colspan=6>none</td></tr>" }
            if list.count == NowView.inHandLimit { body += "<tr><td colspan=6>the first \(NowView.inHandLimit) only</td></tr>" }
        } else {
            body += "<tr><td colspan=6>unknown (the database did not answer)</td></tr>"
        }
        return body + "</table>"
    }

    static func historySection(_ h: HistoryView) -> String {
        var body = "<h2 id=history>The last hour</h2>"
        body += "<p><small>Answers and refusals are counted by this workfcgi in memory since it started; failed callback attempts come from the database.</small></p>"
        let palette = ["#2a6fdb", "#e07b00", "#1a9850", "#b00", "#7b3294", "#555", "#d6604d", "#4393c3"]
        func lines(_ series: [(start: Int64, counts: [String: Int])]) -> [(name: String, color: String, values: [Int])] {
            let keys = Array(Set(series.flatMap { $0.counts.keys })).sorted()
            return keys.enumerated().map { i, k in (k, palette[i % palette.count], series.map { $0.counts[k] ?? 0 }) }
        }
        let start = h.answers.first?.start ?? h.now
        body += chart(id: "answers", title: "answers per minute by route", start: start, lines: lines(h.answers))
        body += chart(id: "refusals", title: "refusals per minute by code", start: start, lines: lines(h.refusals))
        if let failures = h.failures {
            let byMinute = Dictionary(failures.map { ($0.minute, $0.count) }, uniquingKeysWith: +)
            let values = h.answers.map { byMinute[$0.start] ?? 0 }
            body += chart(id: "failures", title: "failed callback attempts per minute", start: start, lines: [("failed attempts", "#b00", values)])
        } else {
            body += "<p>failed callback attempts: unknown (the database did not answer)</p>"
        }
        return body
    }

    /// A round top for a y axis: the least of 1, 2, 5 times a power of ten that is at least `peak` (≥ 1).
    static func axisTop(_ peak: Int) -> Int {
        var decade = 1
        while true {
            for m in [1, 2, 5] where m * decade >= peak { return m * decade }
            decade *= 10
        }
    }

    /// A line per series over 60 minutes, with labelled axes; a point per non-empty minute carries its count as
    /// a tooltip (`<title>`), so the figure can be read without scripts.
    static func chart(id: String, title: String, start: Int64, lines: [(name: String, color: String, values: [Int])]) -> String {
        // The right margin leaves room for the last tick's label (centred on the plot's edge).
        let (w, h, left, right, bottom, top) = (720.0, 170.0, 44.0, 24.0, 34.0, 8.0)
        let peak = max(1, lines.flatMap(\.values).max() ?? 0)
        let scale = Double(axisTop(peak))
        let x = { (i: Int) in left + (w - left - right) * Double(i) / 59 }
        let y = { (v: Double) in top + (h - bottom - top) * (1 - v / scale) }
        let f = { (v: Double) in String(format: "%.1f", v) }
        var svg = "<figure><figcaption>\(HTML.escape(title))</figcaption>"
        svg += "<svg id=\"chart-\(id)\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" width=\(Int(w)) height=\(Int(h)) role=img aria-label=\"\(HTML.escape(title))\">"
        svg += "<line x1=\(left) y1=\(f(h - bottom)) x2=\(w - right) y2=\(f(h - bottom)) stroke=#999 /><line x1=\(left) y1=\(top) x2=\(left) y2=\(f(h - bottom)) stroke=#999 />"
        for tick in [0.0, scale / 2, scale] {
            let label = tick == tick.rounded() ? String(Int(tick)) : String(format: "%.1f", tick)
            svg += "<line x1=\(left) y1=\(f(y(tick))) x2=\(w - right) y2=\(f(y(tick))) stroke=#eee /><text x=\(left - 4) y=\(f(y(tick) + 4)) font-size=11 text-anchor=end>\(label)</text>"
        }
        svg += "<text x=10 y=\(f(top + (h - bottom - top) / 2)) font-size=11 transform=\"rotate(-90 10 \(f(top + (h - bottom - top) / 2)))\" text-anchor=middle>per minute</text>"
        for i in stride(from: 0, through: 59, by: 10) + [59] {
            let label = Timestamp.iso8601(millis: start + Int64(i) * 60_000).dropFirst(11).prefix(5)
            svg += "<line x1=\(f(x(i))) y1=\(f(h - bottom)) x2=\(f(x(i))) y2=\(f(h - bottom + 4)) stroke=#999 />"
            svg += "<text x=\(f(x(i))) y=\(f(h - bottom + 16)) font-size=11 text-anchor=middle>\(label)</text>"
        }
        svg += "<text x=\(f((left + w) / 2)) y=\(f(h - 3)) font-size=11 text-anchor=middle>minute (UTC)</text>"
        for line in lines {
            let points = line.values.enumerated().map { "\(f(x($0.offset))),\(f(y(Double($0.element))))" }.joined(separator: " ")
            svg += "<polyline fill=none stroke=\"\(line.color)\" stroke-width=1.6 points=\"\(points)\" />"
            for (i, v) in line.values.enumerated() where v > 0 {
                let minute = Timestamp.iso8601(millis: start + Int64(i) * 60_000).dropFirst(11).prefix(5)
                svg += "<circle cx=\(f(x(i))) cy=\(f(y(Double(v)))) r=2.2 fill=\"\(line.color)\"><title>\(minute) \(HTML.escape(line.name)) \(v)</title></circle>"
            }
        }
        svg += "</svg>"
        if lines.isEmpty {
            svg += "<br><small>nothing in the last hour</small>"
        } else {
            svg += "<br><small>" + lines.map { l in
                "<span style=\"color:\(l.color)\">■</span> \(HTML.escape(l.name)) (\(l.values.reduce(0, +)) in the hour, \(l.values.last ?? 0) this minute)"
            }.joined(separator: " · ") + "</small>"
        }
        return svg + "</figure>"
    }
}
