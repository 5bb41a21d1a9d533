import ArgumentParser
import CallbackPolicy
import Config
import Delivery
import Doorbell
import Handlers
import Foundation
import Lifecycle
import Store
import WorkEngine

// deliveryd: claims async jobs from SQLite, runs them, and delivers their signed callbacks with retries.
struct Deliveryd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveryd",
        abstract: "The delivery daemon: runs async jobs and delivers their signed callbacks, with retries.",
        discussion: "Settings come from WORKFCGI_* environment variables (README, Configuration).",
        version: "deliveryd \(BuildInfo.versionLine)")

    @Flag(help: "Validate every WORKFCGI_* variable, print the effective settings (secrets masked), exit 0, or 2 when one is invalid.")
    var checkConfig = false

    @Flag(help: "Print the webhook secret in use (generated on first start when WORKFCGI_WEBHOOK_SECRET is unset) and exit.")
    var showSecret = false

    func run() {
        if showSecret { Self.showSecret() }
        Daemon.run(program: "deliveryd", checkConfig: checkConfig) { settings, logger in
            try Host.prepareFolders(settings, group: Host.frontendIdentity(settings).group)
            // deliveryd's own commits (claims, results, attempts) need no fsync each: a power loss can only make it
            // repeat a computation or an attempt (delivery is at least once), never lose a job, whose row workfcgi
            // committed with WORKFCGI_DURABILITY. Checkpoints still sync.
            // The size bound is workfcgi's (it stores its WORKFCGI_MAX_DB_SIZE in the database); deliveryd follows it,
            // with headroom beyond it, so the bookkeeping of jobs already accepted always fits.
            let bound = SizeBound.follows(fallback: settings.maxDatabaseBytes)
            let (sqlite, store): (SQLiteStore?, any DaemonStore)
            if let url = settings.databaseURL {
                (sqlite, store) = (nil, try PostgresStore(url: url, durability: .normal, bound: bound))
            } else {
                let file = try SQLiteStore(path: settings.databasePath, durability: .normal, bound: bound)
                (sqlite, store) = (file, file)
            }
            if let usage = try? store.storageUsage(), let bound = usage.boundBytes, bound != settings.maxDatabaseBytes {
                logger.warning(
                    "WORKFCGI_MAX_DB_SIZE differs from the bound workfcgi stored in the database; following the database's",
                    metadata: ["setting": "\(settings.maxDatabaseBytes)", "database": "\(bound)"])
            }
            let (secret, source) = try SecretFile.load(settings: settings) { try sqlite?.takeSetting("webhook_secret") }
            switch source {
            case .environment, .credential: break
            case .file, .migrated, .generated:
                logger.notice(
                    "WORKFCGI_WEBHOOK_SECRET is unset: signing with the secret in the secret file (deliveryd --show-secret prints it)",
                    metadata: ["file": "\(settings.webhookSecretFile)", "source": "\(source)"])
                // Shown once, to a person at a terminal; never to a log file or the journal.
                if source == .generated && isatty(STDERR_FILENO) == 1 {
                    FileHandle.standardError.write(Data("deliveryd: generated webhook secret \(secret)\n".utf8))
                }
            }
            // One deliveryd per SQLite database, so any lease found now belongs to a predecessor that died: take it
            // back at once rather than waiting out WORKFCGI_LEASE. On PostgreSQL a lease may be another node's:
            // the rescue chore's holder takes a dead node's back once its heartbeat is WORKFCGI_NODE_TIMEOUT old.
            if sqlite == nil {
                // Many nodes per database, but one per doorbell: a second start on this run folder would take over
                // the first one's socket, and the first would never hear this host's commits again.
                Host.holdInstanceLock(settings.doorbellSocket + ".lock", program: "deliveryd")
            }
            if let sqlite {
                Host.holdInstanceLock(settings.databasePath + "-deliveryd.lock", program: "deliveryd")
                let taken = try sqlite.releaseLeases(owner: nil)
                if taken > 0 {
                    logger.notice("took back the leases of a previous deliveryd that did not stop cleanly", metadata: ["jobs": "\(taken)"])
                }
            }
            let handlers = try HandlerRunner.start(settings.handlers, logger: logger, nice: Priority.compute)
            if let handlers { Daemon.onReloadSignal { handlers.registry.reload() } }
            let deliverer = Deliverer(
                store: store, engine: WorkEngine(handlers: handlers), client: CallbackClient(timeoutSeconds: settings.callbackTimeoutSeconds),
                policy: try CallbackURLPolicy(settings: settings), signer: try WebhookSigner(settings: settings, fallback: secret),
                retry: RetryPolicy(settings: settings),
                options: .init(
                    workers: settings.workers, deliveryConcurrency: settings.deliveryConcurrency, leaseSeconds: settings.leaseSeconds,
                    pollSeconds: settings.pollIntervalSeconds, hosts: HostGate.Options(settings: settings),
                    lookups: LookupBudget.Options(total: settings.dnsLookups, perClient: settings.dnsClientLookups),
                    lookupTimeoutSeconds: settings.dnsTimeoutSeconds,
                    retentionSeconds: settings.retentionSeconds, syncPruneAt: settings.syncPruneAt,
                    nodeName: settings.nodeName, nodeTimeoutSeconds: settings.nodeTimeoutSeconds,
                    onWorkerStart: Priority.makeCurrentThreadCompute),
                logger: logger)
            CallbackClient.globalInit()
            let doorbell = try DoorbellListener(path: settings.doorbellSocket)
            // On PostgreSQL every node's commits wake the claim loop (LISTEN/NOTIFY), and this host's doorbell still
            // does: it needs no connection, so local jobs wake it at once while the listener reconnects.
            let wakeup: any Wakeup = settings.databaseURL.map { url in
                let signal = WakeSignal()
                doorbell.forward(to: signal)
                // Kept by its own thread, for the process's life.
                _ = PostgresListener(url: url, wake: signal.ring) { logger.listener($0) }
                return signal
            } ?? doorbell
            // The claim loop runs on the main thread; it returns once stopped and the jobs in hand are finished.
            return Service(
                summary: [
                    "workers": "\(settings.workers)", "node": settings.nodeName, "node_id": deliverer.node.id,
                    "db": sqlite == nil ? "postgresql" : settings.databasePath, "doorbell": settings.doorbellSocket,
                    "wakeup": sqlite == nil ? "doorbell, LISTEN" : "doorbell",
                    "retry_schedule": "\(settings.retrySchedule)",
                ],
                // Rung so the claim loop sees the stop at once, not after its poll interval.
                stop: { [ownBell = Doorbell(path: settings.doorbellSocket)] in
                    deliverer.stop()
                    ownBell.ring()
                },
                wait: {
                    deliverer.run(wakeup: wakeup)
                    doorbell.removeSocketFile()
                    store.close()
                },
                // The claim loop goes round at least every poll interval, and after every claim.
                progressing: { deliverer.secondsSinceLoop < max(10, settings.pollIntervalSeconds * 5) },
                status: { "delivering; \(deliverer.activeWorkers) jobs in hand" })
        }
    }
}

extension Deliveryd {
    /// Prints the secret a deliveryd with these settings signs with, and creates nothing: no folder, database or
    /// secret file. Exits 0 with the secret, else 1 saying why there is none to show.
    static func showSecret() -> Never {
        let settings = Daemon.settings(program: "deliveryd")
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data("deliveryd: \(message)\n".utf8))
            Foundation.exit(1)
        }
        if settings.webhookSecret == nil, let service = InstalledService.linked(from: settings) {
            fail("\(service.link) links to \(service.target): the installed service signs with its own secret, not this folder's; "
                + "as root: cat \(service.secretFile) (or WORKFCGI_WEBHOOK_SECRET in /etc/workfcgi/workfcgi.env)")
        }
        do {
            guard let (secret, _) = try SecretFile.peek(settings: settings) else {
                fail("no secret yet: WORKFCGI_WEBHOOK_SECRET is unset and \(settings.webhookSecretFile) does not exist; "
                    + "deliveryd generates it at its first start with these settings")
            }
            print(secret)
            Foundation.exit(0)
        } catch {
            fail("\(error)")
        }
    }
}

Deliveryd.main()
