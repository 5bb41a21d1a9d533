import API
import ArgumentParser
import CallbackPolicy
import Config
import Doorbell
import FastCGI
import Handlers
import Foundation
import Lifecycle
import Store
import WorkEngine

// workfcgi: the FastCGI responder. Two sockets, two thread pools: /sync gets its own so a storm of slow
// sync calls can only fill its own threads, never those that serve /async and /healthz.
struct Workfcgi: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workfcgi",
        abstract: "The FastCGI responder behind nginx: POST /sync, POST /async, /requests, /healthz, /metrics.",
        discussion: "Settings come from WORKFCGI_* environment variables (README, Configuration).",
        version: "workfcgi \(BuildInfo.versionLine)")

    @Flag(help: "Validate every WORKFCGI_* variable, print the effective settings (secrets masked), exit 0, or 2 when one is invalid.")
    var checkConfig = false

    func run() {
        Daemon.run(program: "workfcgi", checkConfig: checkConfig) { settings, logger in
            let frontend = Host.frontendIdentity(settings)
            for user in frontend.missing {
                logger.notice("no user \(user) (WORKFCGI_FRONTEND_USERS): it cannot use the FastCGI sockets")
            }
            try Host.prepareFolders(settings, group: frontend.group)
            Host.holdInstanceLock(Host.instanceLockPath(settings), program: "workfcgi")
            // The front door sets the bound, for deliveryd too: one value, kept in the database.
            let store: any DaemonStore =
                if let url = settings.databaseURL {
                    try PostgresStore(url: url, durability: settings.durability, bound: .sets(settings.maxDatabaseBytes))
                } else {
                    try SQLiteStore(path: settings.databasePath, durability: settings.durability, bound: .sets(settings.maxDatabaseBytes))
                }
            let handlers = try HandlerRunner.start(settings.handlers, logger: logger, nice: Priority.compute)
            if let handlers { Daemon.onReloadSignal { handlers.registry.reload() } }
            let api = API(
                store: store, engine: WorkEngine(handlers: handlers), policy: try CallbackURLPolicy(settings: settings),
                doorbell: Doorbell(path: settings.doorbellSocket), settings: settings, operators: try OperatorRule(settings: settings),
                logger: logger,
                build: (BuildInfo.version, BuildInfo.revision), handlerRunner: handlers)

            let access = FastCGIServer.Access(
                group: frontend.group, peers: Set([geteuid(), 0] + frontend.uids), addresses: settings.frontendAddresses,
                readTimeout: .milliseconds(Int64(settings.fastcgiReadTimeoutSeconds * 1000)),
                onRefused: { uid, pid, count in
                    logger.warning(
                        "refused a FastCGI peer that is not a front-end user (WORKFCGI_FRONTEND_USERS)",
                        metadata: ["uid": "\(uid)", "pid": "\(pid)", "refusals": "\(count)"])
                },
                onRefusedAddress: { address, count in
                    logger.warning(
                        "refused a FastCGI connection from outside WORKFCGI_FRONTEND_ADDRESSES",
                        metadata: ["peer": "\(address)", "refusals": "\(count)"])
                },
                onRefusedLocalPeer: { address, owner, count in
                    if case .user(let uid) = owner {
                        logger.warning(
                            "refused a FastCGI connection over TCP from a local user that is not a front-end user (WORKFCGI_FRONTEND_USERS)",
                            metadata: ["peer": "\(address)", "uid": "\(uid)", "refusals": "\(count)"])
                    } else {
                        logger.warning(
                            "refused a FastCGI connection over TCP from this machine: its user is not known, so it is refused",
                            metadata: ["peer": "\(address)", "why": "\(owner)", "refusals": "\(count)"])
                    }
                },
                onReadTimeout: { count in
                    logger.warning(
                        "closed FastCGI connections whose request was not complete in time (WORKFCGI_FASTCGI_READ_TIMEOUT)",
                        metadata: ["timeout": "\(settings.fastcgiReadTimeoutSeconds)s", "connections": "\(count)"])
                },
                counted: { api.peerRefused($0) })

            FastCGIServer.initialize()
            // Socket activation (workfcgi.socket): systemd holds the sockets, so a restart drops no connection.
            // A socket systemd did not pass is opened here, as without systemd.
            let inherited = SystemdSockets.take()
            func server(_ listen: ListenAddress, _ pool: Pool, threads: Int) throws -> FastCGIServer {
                let name = pool.rawValue
                let handler: FastCGIServer.Handler = { api.handle($0, pool: pool) }
                let onStart: (@Sendable () -> Void)? = pool == .sync ? Priority.makeCurrentThreadCompute : nil
                let key = listen.description
                let fd: Int32? =
                    switch listen {
                    case .unix(let path): inherited[path] ?? inherited[URL(fileURLWithPath: path).standardizedFileURL.path]
                    case .tcp: inherited[key]
                    }
                if let fd {
                    logger.info("listening on a socket from systemd", metadata: ["socket": "\(key)"])
                    return FastCGIServer(
                        inheritedFD: fd, socketPath: key, tcp: listen.isTCP, name: name, threads: threads, onThreadStart: onStart,
                        maxBodyBytes: settings.maxBodyBytes, access: access, handler: handler)
                }
                switch listen {
                case .unix(let path):
                    return try FastCGIServer(
                        socketPath: path, name: name, threads: threads, onThreadStart: onStart, maxBodyBytes: settings.maxBodyBytes,
                        access: access, handler: handler)
                case .tcp(let host, let port):
                    return try FastCGIServer(
                        host: host, port: port, name: name, threads: threads, onThreadStart: onStart, maxBodyBytes: settings.maxBodyBytes,
                        access: access, handler: handler)
                }
            }
            let servers = [
                try server(settings.syncListen, .sync, threads: settings.syncThreads),
                try server(settings.apiListen, .api, threads: settings.apiThreads),
            ]
            api.watch(servers)
            for server in servers { server.start() }
            return Service(
                summary: [
                    "sync_socket": settings.syncSocket, "api_socket": settings.apiSocket, "db": settings.databaseURL == nil ? settings.databasePath : "postgresql",
                    "sync_concurrency": "\(settings.syncConcurrency)",
                ],
                stop: { for server in servers { server.stop() } },
                wait: {
                    for server in servers { server.wait() }
                    store.close()
                },
                progressing: store.writerResponds,
                status: { "serving; \((try? store.backlog()).map(String.init) ?? "?") async jobs waiting" })
        }
    }
}

Workfcgi.main()
