import JSON
import WorkEngine

/// Reading rows back, the same for both stores (both select the same columns in the same order).
enum Rows {
    /// What `record` reads, in its order.
    static let recordColumns = """
        id, mode, op, status, input, result, error, callback_url, delivery_error, attempts, next_attempt_at,
        created_at, started_at, completed_at, delivered_at, duration_ms
        """

    /// An attempt's row for `INSERT INTO attempts(request_id, n, at, duration_ms, http_status, error,
    /// next_attempt_at)`, in that order (both stores write the same columns).
    static func attemptBindings(_ id: String, _ attempt: AttemptRecord) -> [SQLValue] {
        [
            .text(id), .int(Int64(attempt.n)), .int(attempt.at), .double(attempt.durationMs),
            attempt.httpStatus.map { .int(Int64($0)) } ?? .null, attempt.error.map(SQLValue.text) ?? .null,
            attempt.nextAttemptAt.map(SQLValue.int) ?? .null,
        ]
    }

    /// What `inHand` reads, in its order.
    static let inHandColumns = "id, op, status, attempts, created_at, lease_until, lease_owner, leased_at"

    static func inHand(_ row: Row) -> JobInHand? {
        guard let id = row.text(0), let op = row.text(1).flatMap(JobSpec.Op.init(rawValue:)),
            let status = row.text(2).flatMap(JobStatus.init(rawValue:))
        else { return nil }
        return JobInHand(
            id: id, op: op, status: status, attempts: Int(row.int(3) ?? 0), createdAt: row.int(4) ?? 0, leaseUntil: row.int(5) ?? 0,
            owner: row.text(6) ?? "", leasedAt: row.int(7) ?? 0)
    }

    static func record(_ row: Row) -> RequestRecord? {
        guard let id = row.text(0), let mode = row.text(1).flatMap(RequestMode.init(rawValue:)),
            let op = row.text(2).flatMap(JobSpec.Op.init(rawValue:)),
            let status = row.text(3).flatMap(JobStatus.init(rawValue:))
        else { return nil }
        return RequestRecord(
            id: id, mode: mode, op: op, status: status,
            input: row.text(4).flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? .null,
            result: row.text(5).flatMap { try? JSONValue.parse(Array($0.utf8)) }, error: row.text(6), callbackURL: row.text(7),
            deliveryError: row.text(8), attempts: Int(row.int(9) ?? 0), nextAttemptAt: row.int(10), createdAt: row.int(11) ?? 0,
            startedAt: row.int(12), completedAt: row.int(13), deliveredAt: row.int(14), durationMs: row.double(15), trace: [])
    }

    /// What `attempt` reads, in its order.
    static let attemptColumns = "n, at, duration_ms, http_status, error, next_attempt_at"

    static func attempt(_ row: Row) -> AttemptRecord {
        AttemptRecord(
            n: Int(row.int(0) ?? 0), at: row.int(1) ?? 0, durationMs: row.double(2) ?? 0,
            httpStatus: row.int(3).map { Int($0) }, error: row.text(4), nextAttemptAt: row.int(5))
    }

    /// What a claim returns, in `claimed`'s order.
    static let claimColumns = """
        id, op, spec, callback_url, result, error, duration_ms, attempts, created_at, lease_until,
        attempt_base, next_attempt_at, client, completed_at
        """

    /// The stored job could not be read back: it is delivered as failed, and the record says why.
    static let unreadable = "the stored job could not be read back"

    /// A claimed row; `unreadable(id, failed)` is called (to save `failed` as the job's result) when its work is
    /// still to do but its stored spec cannot be read back.
    static func claimed(_ row: Row, now: UnixMillis, unreadable: (String, WorkResult) throws -> Void) rethrows -> ClaimedJob? {
        guard let id = row.text(0), let op = row.text(1).flatMap(JobSpec.Op.init(rawValue:)), let url = row.text(3) else {
            return nil
        }
        let result = row.text(4).flatMap { try? JSONValue.parse(Array($0.utf8)) }
        var work = ClaimedJob.Work.done(
            WorkResult(result: result, error: row.text(5), durationMs: row.double(6) ?? 0, completedAt: row.int(13) ?? now))
        if result == nil && row.text(5) == nil {
            if let spec = row.text(2).flatMap({ try? JSONValue.parse(Array($0.utf8)) }).flatMap(JobSpec.init(stored:)) {
                work = .toDo(spec)
            } else {
                let failed = WorkResult(result: nil, error: Self.unreadable, durationMs: 0, completedAt: now)
                try unreadable(id, failed)
                work = .done(failed)
            }
        }
        return ClaimedJob(
            id: id, op: op, work: work, callbackURL: url, attempts: Int(row.int(7) ?? 0), attemptBase: Int(row.int(10) ?? 0),
            createdAt: row.int(8) ?? 0, leaseUntil: row.int(9) ?? 0, dueAt: row.int(11) ?? now, client: row.text(12) ?? "")
    }

    /// What `node` reads, in its order.
    static let nodeColumns = "id, name, pid, started_at, heartbeat_at, stopped_at, active_workers, circuits, stats"

    static func node(_ row: Row) -> NodeStatus {
        NodeStatus(
            id: row.text(0) ?? "", name: row.text(1) ?? "", pid: Int(row.int(2) ?? 0), startedAt: row.int(3) ?? 0, heartbeatAt: row.int(4) ?? 0,
            stoppedAt: row.int(5), activeWorkers: Int(row.int(6) ?? 0), circuits: circuits(row.text(7)),
            stats: DeliveryStats(json: row.text(8).flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? [:]))
    }

    /// The rescue's rows (`lease_owner` of each job taken back) counted per owner, named from `names`.
    static func rescues(_ owners: [String], names: [String: String]) -> [Rescue] {
        var counts: [String: Int] = [:]
        for owner in owners { counts[owner, default: 0] += 1 }
        return counts.sorted { $0.key < $1.key }.map { Rescue(owner: $0.key, name: names[$0.key], jobs: $0.value) }
    }

    /// The heartbeat's circuits as stored.
    static func circuitsText(_ circuits: [Circuit]) -> String { JSONValue.array(circuits.map(\.json)).text }

    /// The heartbeat's circuits read back; what does not read as one is left out.
    private static func circuits(_ text: String?) -> [Circuit] {
        guard case .array(let items)? = text.flatMap({ try? JSONValue.parse(Array($0.utf8)) }) else { return [] }
        return items.compactMap(Circuit.init(json:))
    }
}
