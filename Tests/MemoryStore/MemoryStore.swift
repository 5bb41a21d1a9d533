import Store
import Synchronization
import WorkEngine

/// A `JobStore` in memory, for unit tests that drive deliveryd's engine without SQLite: the queue's
/// semantics (leases, due times, attempt series, outcomes), none of the storage bounds. Not for production:
/// nothing survives the process, and every call takes one lock.
public final class MemoryStore: JobStore {
    public struct Row: Sendable {
        public var job: NewJob
        public var status: JobStatus = .pending
        public var work: WorkResult?
        public var attempts = 0
        public var attemptBase = 0
        public var nextAttemptAt: UnixMillis
        public var leaseUntil: UnixMillis = 0
        public var leaseOwner = ""
        public var leasedAt: UnixMillis = 0
        public var deliveredAt: UnixMillis?
        public var deliveryError: String?
        public var trace: [AttemptRecord] = []
    }

    private struct State {
        var rows: [String: Row] = [:]
        var order: [String] = []
        var syncRecords: [SyncRecord] = []
        var nodes: [String: NodeStatus] = [:]
        var chores: [Chore: (node: String, until: UnixMillis)] = [:]
    }

    private let state = Mutex(State())
    /// While true, heartbeats, chores and rescues fail as with the database away.
    public let unreachable = Atomic<Bool>(false)
    public init() {}

    public struct Unreachable: Error {}
    private func reach() throws { if unreachable.load(ordering: .relaxed) { throw Unreachable() } }

    /// The job's row as it stands, for tests to check.
    public func row(_ id: String) -> Row? { state.withLock { $0.rows[id] } }

    public func enqueue(_ job: NewJob, backlogLimit: Int, clientLimit: Int, clientStorageLimit: Int64) throws -> EnqueueOutcome {
        state.withLock { s in
            let backlog = s.rows.values.count { $0.status == .pending || $0.status == .processing }
            guard backlog < backlogLimit else { return .backlogFull(depth: backlog) }
            s.rows[job.id] = Row(job: job, nextAttemptAt: job.createdAt)
            s.order.append(job.id)
            return .accepted(id: job.id)
        }
    }

    public func recordSync(_ record: SyncRecord, clientStorageLimit: Int64) throws { state.withLock { $0.syncRecords.append(record) } }
    public func clientStorage(_ client: String) throws -> Int64 { 0 }
    public func storageUsage() throws -> StorageUsage { StorageUsage(usedBytes: 0, reservedBytes: 0, boundBytes: nil) }

    public func pruneSyncRecords(limit: Int) throws -> Int {
        state.withLock { s in
            let n = min(limit, s.syncRecords.count)
            s.syncRecords.removeFirst(n)
            return n
        }
    }

    public func claim(limit: Int, leaseMillis: Int64, now: UnixMillis, owner: String) throws -> [ClaimedJob] {
        state.withLock { s in
            var claimed: [ClaimedJob] = []
            for id in s.order where claimed.count < limit {
                guard var row = s.rows[id], [.pending, .processing, .delivering].contains(row.status), row.nextAttemptAt <= now,
                    row.leaseUntil <= now
                else { continue }
                (row.leaseUntil, row.leaseOwner, row.leasedAt) = (now + leaseMillis, owner, now)
                if row.status == .pending { row.status = .processing }
                s.rows[id] = row
                claimed.append(
                    ClaimedJob(
                        id: id, op: row.job.spec.op, work: row.work.map(ClaimedJob.Work.done) ?? .toDo(row.job.spec),
                        callbackURL: row.job.callbackURL, attempts: row.attempts, attemptBase: row.attemptBase,
                        createdAt: row.job.createdAt, leaseUntil: row.leaseUntil, dueAt: row.nextAttemptAt, client: row.job.client))
            }
            return claimed
        }
    }

    public func saveResult(id: String, owner: String, _ work: WorkResult) throws {
        state.withLock { s in
            // As the stores' statements: only the job's owner writes it.
            guard s.rows[id]?.status == .processing, s.rows[id]?.leaseOwner == owner else { return }
            s.rows[id]!.work = work
            s.rows[id]!.status = .delivering
        }
    }

    public func recordAttempts(_ writes: [AttemptWrite], owner: String) throws {
        for w in writes {
            if let work = w.computed { try saveResult(id: w.id, owner: owner, work) }
            state.withLock { s in
                guard var row = s.rows[w.id], row.leaseOwner == owner else { return }
                if !row.trace.contains(where: { $0.n == w.attempt.n }) { row.trace.append(w.attempt) }
                row.attempts = w.attempt.n
                row.leaseUntil = 0
                switch w.outcome {
                case .delivered:
                    row.status = row.work?.error == nil ? .completed : .failed
                    row.deliveredAt = w.attempt.at
                case .retry(let at): row.nextAttemptAt = at
                case .giveUp(let reason):
                    row.status = .failed
                    row.deliveryError = reason
                }
                s.rows[w.id] = row
            }
        }
    }

    public func release(id: String, owner: String) throws {
        state.withLock { s in if s.rows[id]?.leaseOwner == owner { s.rows[id]!.leaseUntil = 0 } }
    }

    public func releaseLeases(owner: String?) throws -> Int {
        state.withLock { s in
            for (chore, holder) in s.chores where owner == nil || holder.node == owner { s.chores[chore]!.until = 0 }
            let leased = s.rows.filter { $0.value.leaseUntil > 0 && (owner == nil || $0.value.leaseOwner == owner) }.map(\.key)
            for id in leased { s.rows[id]!.leaseUntil = 0 }
            return leased.count
        }
    }

    public func postpone(id: String, owner: String, until: UnixMillis) throws {
        state.withLock { s in
            guard s.rows[id]?.leaseOwner == owner else { return }
            s.rows[id]?.nextAttemptAt = until
            s.rows[id]?.leaseUntil = 0
        }
    }

    public func redeliver(id: String, now: UnixMillis) throws -> RedeliverOutcome {
        state.withLock { s in
            guard var row = s.rows[id] else { return .notFound }
            guard row.status == .completed || row.status == .failed else { return .notFinished(row.status) }
            (row.status, row.attemptBase, row.nextAttemptAt, row.deliveredAt, row.deliveryError) = (.delivering, row.attempts, now, nil, nil)
            s.rows[id] = row
            return .requeued
        }
    }

    public func redeliverFailed(_ selection: BulkRedeliver, now: UnixMillis) throws -> BulkRedeliverResult {
        state.withLock { s in
            let matching = s.order.filter { id in
                s.rows[id].map { $0.status == .failed && selection.matches(createdAt: $0.job.createdAt, callbackURL: $0.job.callbackURL) } ?? false
            }
            let ids = Array(matching.prefix(selection.limit))
            for id in ids {
                guard var row = s.rows[id] else { continue }
                (row.status, row.attemptBase, row.nextAttemptAt, row.deliveredAt, row.deliveryError) = (.delivering, row.attempts, now, nil, nil)
                s.rows[id] = row
            }
            return BulkRedeliverResult(requeued: ids, more: matching.count > ids.count)
        }
    }

    public func request(id: String) throws -> RequestRecord? { state.withLock { s in s.rows[id].map(Self.record) } }

    public func requests(_ query: RequestQuery) throws -> [RequestRecord] {
        state.withLock { s in
            s.order.reversed().compactMap { s.rows[$0] }.filter { query.status == nil || $0.status == query.status }.prefix(query.limit)
                .map(Self.record)
        }
    }

    private static func record(_ row: Row) -> RequestRecord {
        RequestRecord(
            id: row.job.id, mode: .async, op: row.job.spec.op, status: row.status, input: row.job.input, result: row.work?.result,
            error: row.work?.error, callbackURL: row.job.callbackURL, deliveryError: row.deliveryError, attempts: row.attempts,
            nextAttemptAt: row.nextAttemptAt, createdAt: row.job.createdAt, startedAt: nil, completedAt: row.work?.completedAt,
            deliveredAt: row.deliveredAt, durationMs: row.work?.durationMs, trace: row.trace)
    }

    public func backlog() throws -> Int { state.withLock { s in s.rows.values.count { $0.status == .pending || $0.status == .processing } } }

    public func jobsInHand(now: UnixMillis, limit: Int) throws -> [JobInHand] {
        state.withLock { s in
            s.order.compactMap { id -> JobInHand? in
                guard let row = s.rows[id], row.status == .processing || row.status == .delivering, row.leaseUntil > now else { return nil }
                return JobInHand(
                    id: id, op: row.job.spec.op, status: row.status, attempts: row.attempts, createdAt: row.job.createdAt, leaseUntil: row.leaseUntil,
                    owner: row.leaseOwner, leasedAt: row.leasedAt)
            }.prefix(limit).sorted { ($0.leaseUntil, $0.id) < ($1.leaseUntil, $1.id) }
        }
    }

    public func oldestPendingCreatedAt() throws -> UnixMillis? {
        state.withLock { s in
            for id in s.order { if let row = s.rows[id], row.status == .pending { return row.job.createdAt } }
            return nil
        }
    }

    public func failedAttemptsPerMinute(since: UnixMillis) throws -> [MinuteCount] {
        state.withLock { s in
            var counts: [UnixMillis: Int] = [:]
            for row in s.rows.values {
                for a in row.trace where a.at >= since && (a.error != nil || !(200...299).contains(a.httpStatus ?? 0)) {
                    counts[a.at / 60_000 * 60_000, default: 0] += 1
                }
            }
            return counts.sorted { $0.key < $1.key }.map { MinuteCount(minute: $0.key, count: $0.value) }
        }
    }

    public func statusCounts() throws -> [(mode: RequestMode, status: JobStatus, count: Int)] {
        state.withLock { s in
            JobStatus.allCases.compactMap { status in
                let n = s.rows.values.count { $0.status == status }
                return n > 0 ? (.async, status, n) : nil
            }
        }
    }

    public func prune(finishedBefore before: UnixMillis, limit: Int) throws -> Int { 0 }

    public func heartbeat(_ node: NodeStatus, renew: [String], leaseMillis: Int64, now: UnixMillis) throws -> LeaseRenewal {
        try reach()
        return state.withLock { s in
            s.nodes[node.id] = node
            guard node.stoppedAt == nil else { return LeaseRenewal() }
            let renewed = renew.filter { id in
                guard let row = s.rows[id], row.leaseOwner == node.id, row.leaseUntil > now else { return false }
                s.rows[id]!.leaseUntil = now + leaseMillis
                return true
            }
            return LeaseRenewal(renewed: renewed, lost: renew.filter { s.rows[$0]?.leaseOwner != node.id })
        }
    }

    public func nodes() throws -> [NodeStatus] {
        state.withLock { s in s.nodes.values.sorted { ($0.name, $0.startedAt, $0.id) < ($1.name, $1.startedAt, $1.id) } }
    }

    public func pruneNodes(before: UnixMillis) throws -> Int {
        state.withLock { s in
            let old = s.nodes.values.filter { $0.heartbeatAt < before }.map(\.id)
            for id in old { s.nodes[id] = nil }
            return old.count
        }
    }

    public func takeChore(_ chore: Chore, node: String, until: UnixMillis, now: UnixMillis) throws -> Bool {
        try reach()
        return state.withLock { s in
            if let holder = s.chores[chore], holder.node != node, holder.until > now { return false }
            s.chores[chore] = (node, until)
            return true
        }
    }

    public func rescue(nodeTimeoutMillis: Int64, now: UnixMillis) throws -> [Rescue] {
        try reach()
        return state.withLock { s in
            var counts: [String: Int] = [:]
            for (id, row) in s.rows where (row.status == .processing || row.status == .delivering) && row.leaseUntil > now {
                guard s.nodes[row.leaseOwner]?.liveness(now: now, timeoutMillis: nodeTimeoutMillis) != .alive else { continue }
                s.rows[id]!.leaseUntil = 0
                counts[row.leaseOwner, default: 0] += 1
            }
            return counts.sorted { $0.key < $1.key }.map { Rescue(owner: $0.key, name: s.nodes[$0.key]?.name, jobs: $0.value) }
        }
    }
}
