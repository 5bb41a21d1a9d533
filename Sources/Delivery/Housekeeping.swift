import Foundation
import Logging
import Store

/// The claim loop's chores besides claiming. Every node, each second: its heartbeat (its row, and the
/// renewal of its jobs' leases), the store's bound checked (the oldest sync records pruned near it), and its
/// ask for each `Chore`. Only the chore's holder: the rescue of dead nodes' jobs (every quarter of the node
/// timeout, at least a second apart, once `RescueReadiness` allows) and retention's pruning each minute
/// (finished requests, and the rows of nodes stopped or dead for an hour). A round's pruning stops after
/// `pruneBudgetMillis` and goes on in the next rounds, so the next heartbeat is never held up long.
struct Housekeeping {
    /// What the heartbeat publishes and renews, read from the engine's state when a heartbeat is due.
    struct Published {
        var inHand: Int
        var circuits: [Circuit]
        var stats: DeliveryStats
        var leases: [String]
    }

    var store: any JobStore
    /// This node's row: its id, name, pid and start; the heartbeat fills in the rest.
    private(set) var node: NodeStatus
    var leaseMillis: Int64
    var nodeTimeoutMillis: Int64
    /// Finished requests older than this are deleted; nil keeps them.
    var retentionSeconds: Double?
    /// The fraction of the size bound at which the oldest sync records are deleted; nil: never.
    var syncPruneAt: Double?
    var logger: Logger
    private var chores: [Chore: ChoreLease]
    private var lastHeartbeat: UnixMillis = 0
    private var lastPrune: UnixMillis = 0
    private var lastRescue: UnixMillis = 0
    private var readiness: RescueReadiness
    /// The last retention pass ran out of its budget with rows left: the next round goes on.
    private var retentionBehind = false

    /// Rows of nodes stopped or dead this long are deleted, so restarts do not pile rows up.
    static let nodeRowsKeptMillis: Int64 = 3_600_000
    /// How long one round may spend pruning (retention, and sync records near the bound), in batches: the
    /// next heartbeat is due a second after this one, and must not be held up long.
    static let pruneBudgetMillis: Int64 = 500

    init(
        store: any JobStore, node: NodeStatus, leaseMillis: Int64, nodeTimeoutMillis: Int64, retentionSeconds: Double?, syncPruneAt: Double?,
        logger: Logger
    ) {
        (self.store, self.node, self.leaseMillis, self.nodeTimeoutMillis) = (store, node, leaseMillis, nodeTimeoutMillis)
        (self.retentionSeconds, self.syncPruneAt, self.logger) = (retentionSeconds, syncPruneAt, logger)
        chores = Dictionary(uniqueKeysWithValues: Chore.allCases.map { ($0, ChoreLease(ttlMillis: nodeTimeoutMillis)) })
        readiness = RescueReadiness(nodeTimeoutMillis: nodeTimeoutMillis)
    }

    /// When the next round is due: heartbeats go each second.
    var nextRound: UnixMillis { lastHeartbeat + 1000 }

    /// `published` is read only when a heartbeat is due; `renewed` gets the leases it renewed (and those this
    /// node lost) and their new end, `rescued` how many jobs of dead nodes this node made due again.
    mutating func run(
        now: UnixMillis, published: () -> Published, renewed: (LeaseRenewal, UnixMillis) -> Void, rescued: (Int) -> Void
    ) {
        // A clock set back does not stop the heartbeats until it has caught up.
        guard now - lastHeartbeat >= 1000 || now < lastHeartbeat else { return }
        lastHeartbeat = now
        // The time on the caller's clock, `now` plus what this round has taken so far.
        let wallAtStart = WallClock.nowMillis()
        let clock = { now + WallClock.nowMillis() - wallAtStart }
        let beaten = beat(published(), now: now, renewed: renewed)
        readiness.heartbeat(succeeded: beaten, now: clock())
        let pruneUntil = now + Self.pruneBudgetMillis
        pruneNearBound(until: pruneUntil, clock: clock)
        for chore in Chore.allCases {
            let taken = (try? store.takeChore(chore, node: node.id, until: chores[chore]!.ask(now: now), now: now)) ?? false
            if chores[chore]!.answered(taken: taken, askedAt: now, now: now) {
                logger.info(taken ? "this node now does a chore for every node" : "this node no longer holds a chore",
                    metadata: ["chore": "\(chore.rawValue)", "node": "\(node.name)"])
            }
        }
        if chores[.rescue]!.holds(now: now), readiness.mayRescue(now: now), now - lastRescue >= max(1000, nodeTimeoutMillis / 4) {
            lastRescue = now
            rescue(now: now, rescued: rescued)
        }
        if chores[.retention]!.holds(now: now), retentionBehind || now - lastPrune >= 60_000 {
            if !retentionBehind { lastPrune = now }
            retentionBehind = false
            if let retention = retentionSeconds {
                // In small batches, so the write lock is never held for long; within the round's budget.
                let cutoff = now - UnixMillis(retention * 1000)
                while let n = try? store.prune(finishedBefore: cutoff, limit: 500), n > 0 {
                    let at = clock()
                    guard at < pruneUntil, chores[.retention]!.holds(now: at) else { retentionBehind = true; break }
                }
            }
            if !retentionBehind { _ = try? store.pruneNodes(before: now - Self.nodeRowsKeptMillis) }
        }
    }

    /// A clean stop: this node's leases and chores given back (due again at once for the other nodes, or the
    /// next start), then its row marked stopped with its last circuits and counters.
    mutating func stopped(_ p: Published, now: UnixMillis) {
        _ = try? store.releaseLeases(owner: node.id)
        node.stoppedAt = now
        beat(p, now: now) { _, _ in }
    }

    /// Whether the store took the heartbeat.
    @discardableResult
    private mutating func beat(_ p: Published, now: UnixMillis, renewed: (LeaseRenewal, UnixMillis) -> Void) -> Bool {
        (node.heartbeatAt, node.activeWorkers, node.circuits, node.stats) = (now, p.inHand, p.circuits, p.stats)
        do {
            let renewal = try store.heartbeat(node, renew: p.leases, leaseMillis: leaseMillis, now: now)
            if !renewal.lost.isEmpty {
                logger.warning(
                    "jobs now leased by another node (this one was found dead, or their leases ran out): dropped, not written",
                    metadata: ["jobs": "\(renewal.lost.count)", "node": "\(node.name)"])
            }
            renewed(renewal, now + leaseMillis)
            return true
        } catch {
            logger.warning("heartbeat failed; no rescue until heartbeats have succeeded for the node timeout", metadata: ["error": "\(error)"])
            return false
        }
    }

    private func rescue(now: UnixMillis, rescued: (Int) -> Void) {
        guard let rescues = try? store.rescue(nodeTimeoutMillis: nodeTimeoutMillis, now: now), !rescues.isEmpty else { return }
        for r in rescues {
            logger.notice(
                "rescued the jobs of a dead deliveryd node: due again at once",
                metadata: ["node": "\(r.name ?? "(no row)")", "node_id": "\(r.owner)", "jobs": "\(r.jobs)"])
        }
        rescued(rescues.reduce(0) { $0 + $1.jobs })
    }

    /// Reads how full the store is (which also picks up a bound workfcgi changed) and, at or above
    /// `syncPruneAt`, deletes the oldest sync records (answered long ago, nothing waits for them) in small
    /// batches until 5 points under it (or `until`; the next rounds go on): the store makes room by itself.
    private func pruneNearBound(until: UnixMillis, clock: () -> UnixMillis) {
        guard var usage = try? store.storageUsage(), let mark = syncPruneAt, usage.fraction >= mark else { return }
        let before = usage
        var deleted = 0
        for _ in 0..<20 {
            guard let n = try? store.pruneSyncRecords(limit: 200), n > 0 else { break }
            deleted += n
            guard let now = try? store.storageUsage() else { break }
            usage = now
            if usage.fraction < mark - 0.05 || clock() >= until { break }
        }
        logger.notice(
            "store near its size bound: deleted the oldest sync records",
            metadata: [
                "records": "\(deleted)", "used_before": "\(before.usedBytes)", "used": "\(usage.usedBytes)",
                "reserved": "\(usage.reservedBytes)", "bound": "\(usage.boundBytes ?? 0)",
            ])
    }
}
