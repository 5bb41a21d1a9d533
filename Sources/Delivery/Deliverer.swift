import CallbackPolicy
import CSystem
import Doorbell
import Foundation
import Logging
import Store
import Synchronization
import WorkEngine

/// deliveryd's engine: claims due jobs with a lease, runs their work on N worker threads, hands the
/// callback to the dispatcher (libcurl multi, one thread, many transfers at once), and records every
/// attempt before scheduling the next. Every decision is `DeliveryState`'s; this is the shell that carries
/// them out: the threads, libcurl, the resolver and the store. Compute workers never wait on the network or
/// on DNS, so slow receivers and slow name servers cannot hold up other jobs. Each start is a node with its
/// own id, the owner of the leases it takes; its heartbeat renews them. A job whose node died is made due
/// again by the rescue chore's holder (or when its lease runs out), so nothing committed is lost; at worst a
/// callback is sent twice, with the same webhook-id both times.
public final class Deliverer: Sendable {
    private let store: any JobStore
    private let policy: CallbackURLPolicy
    private let options: Options
    private let logger: Logger
    private let state: Mutex<DeliveryState>
    private let dispatcher = CallbackDispatcher()
    private let resolver: NameResolver
    private let recorder: Recorder
    private let worker: JobWorker
    private let sender: CallbackSender
    /// Wakes the claim loop after every event (room may have come free); `work` wakes a worker per queued job.
    private let slotFreed = DispatchSemaphore(value: 0)
    private let work = DispatchSemaphore(value: 0)
    private let workersDone = DispatchGroup()
    /// When the claim loop last went round (uptime nanoseconds).
    private let loopAt = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)
    /// This start's row: its id is the owner of every lease it takes.
    public let node: NodeStatus

    /// The circuits of this node name's last heartbeat are taken back: a restart does not forget a dead receiver.
    public init(
        store: any JobStore, engine: WorkEngine, client: CallbackClient, policy: CallbackURLPolicy, signer: WebhookSigner,
        retry: RetryPolicy, options: Options, logger: Logger, lookup: @escaping NameResolver.Lookup = NameResolver.system
    ) {
        (self.store, self.policy, self.options, self.logger) = (store, policy, options, logger)
        node = NodeStatus(
            id: UUID().uuidString.lowercased(), name: options.nodeName, pid: Int(getpid()), startedAt: WallClock.nowMillis(), heartbeatAt: 0)
        let circuits = ((try? store.nodes()) ?? []).filter { $0.name == options.nodeName }.max { $0.heartbeatAt < $1.heartbeatAt }?.circuits ?? []
        state = Mutex(
            DeliveryState(
                options: .init(workers: options.workers, deliveryConcurrency: options.deliveryConcurrency, hosts: options.hosts),
                retry: retry, circuits: circuits))
        // Every write about a claimed job names this node, its owner: the store refuses it once another node has the job.
        recorder = Recorder(store: store, owner: node.id, logger: logger)
        worker = JobWorker(engine: engine, store: store, owner: node.id, policy: policy, logger: logger)
        sender = CallbackSender(client: client, signer: signer, dispatcher: dispatcher)
        resolver = NameResolver(budget: options.lookups, timeoutSeconds: options.lookupTimeoutSeconds, lookup: lookup)
    }

    /// How long ago the claim loop last went round: the watchdog's proof of progress.
    public var secondsSinceLoop: Double { Double(DispatchTime.now().uptimeNanoseconds &- loopAt.load(ordering: .relaxed)) / 1e9 }

    /// Jobs being worked on right now: computing, looking up their callback host, or with an attempt in flight.
    public var activeWorkers: Int { state.withLock { $0.inHand } }

    /// Asks `run` to return: no new claims; jobs in hand finish (work and one delivery attempt).
    public func stop() { handle { $0.stop(now: WallClock.nowMillis()) } }

    /// Runs the claim loop on the calling thread until `stop()`, then waits for the jobs in hand.
    public func run(wakeup: any Wakeup) {
        dispatcher.start()
        recorder.start(
            recorded: { [self] records in handle { $0.recorded(records, now: WallClock.nowMillis()); return [] } },
            failed: { [self] pending in state.withLock { $0.recordFailed(pending: pending) } })
        for i in 0..<options.workers {
            workersDone.enter()
            Thread { [self] in
                workfcgi_name_thread("worker-\(i)")
                options.onWorkerStart()
                worker.loop(next: { work.wait(); return state.withLock { $0.nextForWorker() } }) { d, checked in
                    handle { $0.workDone(d, checked: checked, now: WallClock.nowMillis()) }
                }
                workersDone.leave()
            }.start()
        }
        let (drained, choresStopped) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        // The first heartbeat before the first claim: a lease whose owner has no row reads as a dead node's.
        let firstRound = DispatchSemaphore(value: 0)
        startHousekeeping(firstRound: firstRound, until: drained, then: choresStopped)
        firstRound.wait()
        while !state.withLock({ $0.stopping }) {
            loopAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
            let now = WallClock.nowMillis()
            var limit = 0
            for action in state.withLock({ $0.tick(now: now) }) {
                if case .claim(let n) = action { limit = n } else { perform(action) }
            }
            guard limit > 0 else {
                _ = slotFreed.wait(timeout: .now() + options.pollSeconds)
                continue
            }
            let began = DispatchTime.now()
            var queued = 0
            do {
                let jobs = try store.claim(limit: limit, leaseMillis: leaseMillis, now: now, owner: node.id)
                queued = state.withLock { $0.claimed(jobs, now: now) }
            } catch {
                logger.error("claim failed", metadata: ["error": "\(error)"])
            }
            guard queued > 0 else {
                wakeup.wait(timeout: options.pollSeconds)
                continue
            }
            for _ in 0..<queued { work.signal() }
            Recorder.pace(since: began)
        }
        // Every worker sees `.exit` once the queue is empty; lookups in flight end by their deadline, and what
        // they start still needs the dispatcher; what the dispatcher finishes still needs the recorder.
        for _ in 0..<options.workers { work.signal() }
        workersDone.wait()
        let lookupsEnd = DispatchTime.now() + options.lookupTimeoutSeconds + 1
        while !state.withLock({ $0.lookupsDone }) && DispatchTime.now() < lookupsEnd { usleep(10_000) }
        dispatcher.stopAndWait()
        recorder.closeAndWait()
        drained.signal()
        choresStopped.wait()
    }

    /// The heartbeat and the chores on their own thread, each second: a claim loop waiting out its poll
    /// interval, or stuck in a slow claim, never delays a heartbeat (a live node would read as dead). They go
    /// on while the jobs in hand finish after a stop, renewing their leases, until `drained`.
    private func startHousekeeping(firstRound: DispatchSemaphore, until drained: DispatchSemaphore, then stopped: DispatchSemaphore) {
        Thread { [self] in
            workfcgi_name_thread("housekeeping")
            var chores = Housekeeping(
                store: store, node: node, leaseMillis: leaseMillis, nodeTimeoutMillis: Int64(options.nodeTimeoutSeconds * 1000),
                retentionSeconds: options.retentionSeconds, syncPruneAt: options.syncPruneAt, logger: logger)
            var first = true
            repeat {
                let now = WallClock.nowMillis()
                chores.run(
                    now: now, published: { published(now: now) },
                    renewed: { renewal, until in state.withLock { $0.leasesRenewed(renewal, until: until) } },
                    rescued: { jobs in state.withLock { $0.rescued(jobs) } })
                if first {
                    first = false
                    firstRound.signal()
                }
            } while drained.wait(timeout: .now() + Double(min(1000, max(10, chores.nextRound - WallClock.nowMillis()))) / 1000) == .timedOut
            // Jobs postponed too late to write are due again at once for the other nodes (or the next start), rather
            // than after their leases; the row says stopped, so /healthz shows this node so at once, and its circuits
            // wait under its name for the next start.
            let now = WallClock.nowMillis()
            var last = published(now: now)
            last.inHand = 0
            chores.stopped(last, now: now)
            stopped.signal()
        }.start()
    }

    private var leaseMillis: Int64 { Int64(options.leaseSeconds * 1000) }

    /// What the heartbeat publishes: the state's counters, with the handler runs' tally (the runner keeps it).
    private func published(now: UnixMillis) -> Housekeeping.Published {
        var p = state.withLock {
            Housekeeping.Published(inHand: $0.inHand, circuits: $0.gate.circuits(now: now), stats: $0.stats, leases: $0.leaseIDs)
        }
        p.stats.handlers = worker.handlerTally
        return p
    }

    /// Runs one event on the state, carries out what it returns, and wakes the claim loop.
    private func handle(_ event: (inout DeliveryState) -> [DeliveryState.Action]) {
        for action in state.withLock({ event(&$0) }) { perform(action) }
        slotFreed.signal()
    }

    private func perform(_ action: DeliveryState.Action) {
        switch action {
        case .claim: preconditionFailure("claims are the claim loop's")
        case .resolve(let d, let target):
            resolver.resolve(target.host, client: d.job.client) { [self] lookup in
                handle { $0.resolved(d, target, lookup: lookup, policy: policy, now: WallClock.nowMillis()) }
            }
        case .send(let s):
            sender.send(s) { [self] result, ms in
                handle { $0.attemptFinished(s, .transfer(result), durationMs: ms, now: WallClock.nowMillis()) }
            }
        case .postpone, .record, .release: recorder.submit(action)
        }
    }
}
