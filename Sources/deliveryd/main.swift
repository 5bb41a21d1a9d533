import Config
import Delivery
import Doorbell
import Foundation
import Logging
import Store
import WorkEngine

// deliveryd: claims async jobs from SQLite, runs them, and delivers their signed callbacks with retries.
// `deliveryd --show-secret` prints the webhook secret in use (generated and stored on first start when
// WORKFCGI_WEBHOOK_SECRET is unset) and exits; the secret itself is never logged.

let flags = Startup.commandLine(
    program: "deliveryd", summary: "The delivery daemon: runs async jobs and delivers their signed callbacks, with retries.",
    extra: [("--show-secret", "print the webhook secret in use and exit")])
let settings = Startup.settings(program: "deliveryd")
Startup.bootstrapLogging(settings)
let logger = Logger(label: "deliveryd")

do {
    try Startup.makeRunDirectory(settings.runDirectory, group: Startup.nginxIdentity(settings)?.gid)
    // deliveryd's own commits (claims, results, attempts) need no fsync each: a power loss can only make it
    // repeat a computation or an attempt (delivery is at least once), never lose a job, whose row workfcgi
    // committed with WORKFCGI_DURABILITY. Checkpoints still sync.
    let store = try SQLiteStore(path: settings.databasePath, synchronous: "NORMAL", maxBytes: settings.maxDatabaseBytes)
    let (secret, source) = try SecretFile.load(settings: settings) { try store.takeSetting("webhook_secret") }
    if flags.contains("--show-secret") {
        print(secret)
        exit(0)
    }
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
    // One deliveryd per database, so any lease found now belongs to a predecessor that died: take it back
    // at once rather than waiting out WORKFCGI_LEASE.
    Startup.holdInstanceLock(settings.databasePath + "-deliveryd.lock", program: "deliveryd")
    let taken = try store.releaseLeases()
    if taken > 0 { logger.notice("took back the leases of a previous deliveryd that did not stop cleanly", metadata: ["jobs": "\(taken)"]) }
    let deliverer = Deliverer(
        store: store, engine: WorkEngine(), client: CallbackClient(timeoutSeconds: settings.callbackTimeoutSeconds),
        policy: try CallbackURLPolicy(settings: settings), signer: try WebhookSigner(settings: settings, fallback: secret),
        retry: RetryPolicy(settings: settings),
        options: .init(
            workers: settings.workers, deliveryConcurrency: settings.deliveryConcurrency, leaseSeconds: settings.leaseSeconds, pollSeconds: settings.pollIntervalSeconds,
            hosts: HostGate.Options(settings: settings), retentionSeconds: settings.retentionSeconds),
        logger: logger)
    CallbackClient.globalInit()
    let doorbell = try DoorbellListener(path: settings.doorbellSocket)

    let signals = Startup.onStopSignal { sig in
        logger.info("stopping: finishing jobs in hand", metadata: ["signal": "\(sig)"])
        deliverer.stop()
    }
    signal(SIGPIPE, SIG_IGN)
    logger.info(
        "running",
        metadata: [
            "workers": "\(settings.workers)", "db": "\(settings.databasePath)", "doorbell": "\(settings.doorbellSocket)",
            "retry_schedule": "\(settings.retrySchedule)",
        ])
    deliverer.run(doorbell: doorbell)
    store.close()
    withExtendedLifetime(signals) {}
    logger.info("stopped")
    exit(0)
} catch {
    logger.critical("cannot start", metadata: ["error": "\(error)"])
    exit(1)
}
