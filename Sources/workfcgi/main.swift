import API
import Config
import Delivery
import Doorbell
import FastCGI
import Foundation
import Logging
import Store
import WorkEngine

// workfcgi: the FastCGI responder. Two sockets, two thread pools: /sync gets its own so a storm of slow
// sync calls can only fill its own threads, never those that serve /async and /healthz.

_ = Startup.commandLine(
    program: "workfcgi", summary: "The FastCGI responder behind nginx: POST /sync, POST /async, /requests, /healthz, /metrics.")
let settings = Startup.settings(program: "workfcgi")
Startup.bootstrapLogging(settings)
let logger = Logger(label: "workfcgi")

do {
    let nginx = Startup.nginxIdentity(settings)
    if nginx == nil {
        logger.notice("no user \(settings.nginxUser) (WORKFCGI_NGINX_USER): only this user and root may use the FastCGI sockets")
    }
    try Startup.makeRunDirectory(settings.runDirectory, group: nginx?.gid)
    Startup.holdInstanceLock(settings.apiSocket + ".lock", program: "workfcgi")
    let access = FastCGIServer.Access(group: nginx?.gid, peers: Set([geteuid(), 0] + (nginx.map { [$0.uid] } ?? [])))
    let store = try SQLiteStore(
        path: settings.databasePath, synchronous: settings.durability.sqliteSynchronous, maxBytes: settings.maxDatabaseBytes)
    let policy = try CallbackURLPolicy(settings: settings)
    let api = API(store: store, engine: WorkEngine(), policy: policy, doorbell: Doorbell(path: settings.doorbellSocket), settings: settings,
        logger: logger)

    FastCGIServer.initialize()
    let servers = [
        try FastCGIServer(
            socketPath: settings.syncSocket, name: "sync", threads: settings.syncThreads, onThreadStart: Priority.makeCurrentThreadCompute, maxBodyBytes: settings.maxBodyBytes, access: access, handler: api.handle),
        try FastCGIServer(socketPath: settings.apiSocket, name: "api", threads: settings.apiThreads, maxBodyBytes: settings.maxBodyBytes, access: access, handler: api.handle),
    ]

    // After FCGX_Init, which installs libfcgi's flag-only SIGTERM handler.
    let signals = Startup.onStopSignal { sig in
        logger.info("stopping: finishing in-flight requests", metadata: ["signal": "\(sig)"])
        for server in servers { server.stop() }
    }

    for server in servers { server.start() }
    logger.info(
        "listening",
        metadata: [
            "sync_socket": "\(settings.syncSocket)", "api_socket": "\(settings.apiSocket)", "db": "\(settings.databasePath)",
            "sync_concurrency": "\(settings.syncConcurrency)",
        ])
    for server in servers { server.wait() }
    store.close()
    withExtendedLifetime(signals) {}
    logger.info("stopped")
    exit(0)
} catch {
    logger.critical("cannot start", metadata: ["error": "\(error)"])
    exit(1)
}
