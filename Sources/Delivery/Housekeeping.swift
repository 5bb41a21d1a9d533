import Foundation
import Logging
import Store

/// The claim loop's chores besides claiming: the heartbeat each second (with the store's bound checked and
/// the oldest sync records pruned near it), and retention's pruning each minute.
struct Housekeeping {
    var store: any JobStore
    /// Finished requests older than this are deleted; nil keeps them.
    var retentionSeconds: Double?
    /// The fraction of the size bound at which the oldest sync records are deleted; nil: never.
    var syncPruneAt: Double?
    var logger: Logger
    private var lastHeartbeat: UnixMillis = 0
    private var lastPrune: UnixMillis = 0

    init(store: any JobStore, retentionSeconds: Double?, syncPruneAt: Double?, logger: Logger) {
        self.store = store
        self.retentionSeconds = retentionSeconds
        self.syncPruneAt = syncPruneAt
        self.logger = logger
    }

    /// `published` is read only when a heartbeat is due.
    mutating func run(now: UnixMillis, published: () -> (inHand: Int, circuits: [Circuit], stats: DeliveryStats)) {
        if now - lastHeartbeat >= 1000 {
            let p = published()
            try? store.heartbeat(pid: Int(getpid()), activeWorkers: p.inHand, circuits: p.circuits, stats: p.stats, now: now)
            lastHeartbeat = now
            pruneNearBound()
        }
        if let retention = retentionSeconds, now - lastPrune >= 60_000 {
            // In small batches, so the write lock is never held for long.
            let cutoff = now - UnixMillis(retention * 1000)
            while let n = try? store.prune(finishedBefore: cutoff, limit: 500), n > 0 {}
            lastPrune = now
        }
    }

    /// Reads how full the store is (which also picks up a bound workfcgi changed) and, at or above
    /// `syncPruneAt`, deletes the oldest sync records (answered long ago, nothing waits for them) in small
    /// batches until 5 points under it: the store makes room by itself.
    private func pruneNearBound() {
        guard var usage = try? store.storageUsage(), let mark = syncPruneAt, usage.fraction >= mark else { return }
        let before = usage
        var deleted = 0
        for _ in 0..<20 {
            guard let n = try? store.pruneSyncRecords(limit: 200), n > 0 else { break }
            deleted += n
            guard let now = try? store.storageUsage() else { break }
            usage = now
            if usage.fraction < mark - 0.05 { break }
        }
        logger.notice(
            "store near its size bound: deleted the oldest sync records",
            metadata: [
                "records": "\(deleted)", "used_before": "\(before.usedBytes)", "used": "\(usage.usedBytes)",
                "reserved": "\(usage.reservedBytes)", "bound": "\(usage.boundBytes ?? 0)",
            ])
    }
}
