#if canImport(Glibc)
    import Glibc
#endif

/// Every setting of workfcgi, deliveryd and the scripts, read from `WORKFCGI_*` environment variables.
/// One type shared by all executables, so a variable means the same thing everywhere.
public struct Settings: Sendable, Equatable {
    public var runDirectory: String
    public var databasePath: String
    /// WORKFCGI_DATABASE_URL, a libpq connection URI: the PostgreSQL store, which several nodes can share.
    /// nil (unset): SQLite at `databasePath`.
    public var databaseURL: String?
    public var syncSocket: String
    public var apiSocket: String
    /// `syncSocket` and `apiSocket` parsed: a unix socket path or TCP `HOST:PORT`.
    public var syncListen: ListenAddress
    public var apiListen: ListenAddress
    /// The peers a TCP FastCGI socket admits (WORKFCGI_FRONTEND_ADDRESSES); unix sockets check uids instead.
    public var frontendAddresses: FrontendAddresses
    /// How long a FastCGI connection has from its accept to a complete request (BEGIN_REQUEST, params, body).
    public var fastcgiReadTimeoutSeconds: Double
    public var doorbellSocket: String
    public var syncConcurrency: Int
    public var syncWaitMilliseconds: Int
    public var syncThreads: Int
    public var apiThreads: Int
    public var maxBodyBytes: Int
    public var backlogLimit: Int
    /// Unfinished jobs (delivering included) one client address may have before /async answers 503.
    public var clientBacklogLimit: Int
    public var workers: Int
    /// Callback attempts deliveryd has in flight at once.
    public var deliveryConcurrency: Int
    /// Delays before the 2nd, 3rd, ... attempt; attempts = schedule.count + 1.
    public var retrySchedule: [Double]
    public var retryJitter: Double
    public var callbackTimeoutSeconds: Double
    /// How long deliveryd waits for a callback host name's lookup; past it the attempt fails and is retried.
    public var dnsTimeoutSeconds: Double
    /// Lookup threads deliveryd runs at once, and how many one client's lookups may hold (getaddrinfo cannot
    /// be cancelled: a lookup stuck past its deadline holds its thread until the system resolver gives up).
    public var dnsLookups: Int
    public var dnsClientLookups: Int
    public var allowPrivateCallbacks: Bool
    public var callbackPorts: [ClosedRange<Int>]
    public var leaseSeconds: Double
    /// WORKFCGI_NODE_NAME: this deliveryd node's name in /healthz, /metrics and /ui (default: the host name).
    public var nodeName: String
    /// WORKFCGI_NODE_TIMEOUT: a deliveryd node whose heartbeat is older than this is dead, and its jobs are
    /// rescued by another node.
    public var nodeTimeoutSeconds: Double
    /// How long finished requests are kept; nil keeps them forever.
    public var retentionSeconds: Double?
    public var hostConcurrency: Int
    public var breakerThreshold: Int
    public var breakerCooldownSeconds: Double
    public var pollIntervalSeconds: Double
    public var durability: Durability
    /// The database may not grow past this; writes then fail and /async answers 503 storage_full.
    public var maxDatabaseBytes: Int64
    /// Bytes one client address may keep stored (its rows' input, spec and result, sync records included, and
    /// the reserve of its unfinished jobs' results) before /async and /sync answer 503 client_storage_full.
    public var clientStorageLimit: Int64
    /// The fraction of the size bound at which deliveryd deletes the oldest sync records (and /healthz says
    /// nearly_full); nil: never.
    public var syncPruneAt: Double?
    public var webhookSecret: String?
    /// Where deliveryd keeps the generated secret (0600) when WORKFCGI_WEBHOOK_SECRET is unset.
    public var webhookSecretFile: String
    /// The users the front end's workers run as (nginx's, Apache's, lighttpd's, Caddy's): the FastCGI sockets
    /// get the first one's group, and only these users (besides this process's own user and root) may talk
    /// FastCGI to workfcgi.
    public var frontendUsers: [String]
    /// Client addresses (CIDRs) that may call the operator endpoints; workfcgi checks REMOTE_ADDR itself,
    /// whatever the front end's own allow-list says.
    public var operatorAddresses: [String]
    /// Host names (the request's Host header) the operator endpoints answer for: a page on another name,
    /// even one rebound to a loopback address, gets 403.
    public var operatorHosts: [String]
    /// The secret being rotated out; callbacks carry a signature for each while both are set.
    public var webhookSecretPrevious: String?
    /// CIDR ranges callbacks may reach even though they are private (e.g. an internal receiver).
    public var callbackAllowCIDRs: [String]
    public var logLevel: LogLevel
    public var logFormat: LogFormat
    /// One info line per request in workfcgi (method, route, status, duration, request id).
    public var accessLog: Bool
    /// WORKFCGI_SLOW_LOG: a request that takes at least this long is logged at warning with its id, route, op,
    /// the shape of its parameters and its duration; nil (`off`, the default): no slow log.
    public var slowLogSeconds: Double?
    /// Handler programs: the folder and each run's limits.
    public var handlers: HandlerSettings

    /// What a committed 202 survives. `full` (default): power loss, SQLite fsyncs every commit.
    /// `normal`: a process crash only; WAL with synchronous=NORMAL may lose the last commits on power loss.
    public enum Durability: String, Sendable {
        case full, normal
    }

    public static let prefix = "WORKFCGI_"

    /// Reads settings from `environment`. Throws `ConfigError` naming the first bad variable.
    public init(environment: [String: String]) throws(ConfigError) {
        try self.init(reader: Reader(environment: environment))
    }

    init(reader env: Reader) throws(ConfigError) {
        let environment = env.environment
        runDirectory = try env.string("RUN_DIR", default: "run")
        databasePath = try env.string("DB_PATH", default: runDirectory + "/workfcgi.db")
        let databaseURL = try env.string("DATABASE_URL", default: "")
        self.databaseURL = databaseURL.isEmpty ? nil : databaseURL
        syncSocket = try env.string("SYNC_SOCKET", default: runDirectory + "/sync.sock")
        apiSocket = try env.string("API_SOCKET", default: runDirectory + "/api.sock")
        func listen(_ name: String, _ text: String) throws(ConfigError) -> ListenAddress {
            do throws(ListenAddressError) { return try ListenAddress(parsing: text) } catch {
                throw ConfigError(variable: Self.prefix + name, message: error.message)
            }
        }
        syncListen = try listen("SYNC_SOCKET", syncSocket)
        apiListen = try listen("API_SOCKET", apiSocket)
        frontendAddresses = FrontendAddresses(
            try CIDR.list(try env.list("FRONTEND_ADDRESSES", default: FrontendAddresses.loopback), variable: Self.prefix + "FRONTEND_ADDRESSES"))
        // A front end that buffers the request (nginx, by default) sends it in one go: a peer still sending
        // after 5 s is dripping it, and holds a pool thread meanwhile.
        fastcgiReadTimeoutSeconds = try env.duration("FASTCGI_READ_TIMEOUT", default: 5, 0.1...3600)
        doorbellSocket = try env.string("DOORBELL_SOCKET", default: runDirectory + "/deliveryd.sock")
        // Two pools on one socket: the second bind fails, or (a path) the second server removes the first's socket.
        if syncListen.overlaps(apiListen) {
            throw ConfigError(
                variable: Self.prefix + "SYNC_SOCKET",
                message: "'\(syncSocket)' is the same socket as WORKFCGI_API_SOCKET='\(apiSocket)': each pool needs its own")
        }
        for (name, listen, text) in [("SYNC_SOCKET", syncListen, syncSocket), ("API_SOCKET", apiListen, apiSocket)]
        where listen.overlaps(.unix(path: doorbellSocket)) {
            throw ConfigError(
                variable: Self.prefix + name, message: "'\(text)' is the same socket as WORKFCGI_DOORBELL_SOCKET='\(doorbellSocket)'")
        }
        syncConcurrency = try env.int("SYNC_CONCURRENCY", default: 10, 1...1000)
        syncWaitMilliseconds = Int(try env.duration("SYNC_WAIT", default: 2, 0...300) * 1000)
        syncThreads = try env.int("SYNC_THREADS", default: 64, 1...4096)
        // Each /async holds its thread until its group commit: the threads bound how many share one commit.
        apiThreads = try env.int("API_THREADS", default: 64, 1...4096)
        maxBodyBytes = try env.int("MAX_BODY_BYTES", default: 1_048_576, 1024...(64 << 20))
        backlogLimit = try env.int("BACKLOG_LIMIT", default: 1000, 1...10_000_000)
        clientBacklogLimit = try env.int("CLIENT_BACKLOG_LIMIT", default: 500, 1...10_000_000)
        workers = try env.int("WORKERS", default: 4, 1...256)
        deliveryConcurrency = try env.int("DELIVERY_CONCURRENCY", default: 256, 1...10_000)
        retrySchedule = try env.durationList("RETRY_SCHEDULE", default: [1, 2, 4, 8])
        retryJitter = try env.double("RETRY_JITTER", default: 0.25, 0...1)
        callbackTimeoutSeconds = try env.duration("CALLBACK_TIMEOUT", default: 10, 0.1...300)
        dnsTimeoutSeconds = try env.duration("DNS_TIMEOUT", default: 2, 0.1...60)
        dnsLookups = try env.int("DNS_LOOKUPS", default: 64, 1...4096)
        dnsClientLookups = try env.int("DNS_CLIENT_LOOKUPS", default: 8, 1...4096)
        allowPrivateCallbacks = try env.bool("ALLOW_PRIVATE_CALLBACKS", default: false)
        callbackPorts = try env.portList("CALLBACK_PORTS", default: [80...80, 443...443, 8000...9999])
        leaseSeconds = try env.duration("LEASE", default: 60, 1...86_400)
        nodeName = try env.string("NODE_NAME", default: Self.hostName())
        guard Self.isNodeName(nodeName) else {
            throw ConfigError(
                variable: Self.prefix + "NODE_NAME",
                message: "must be 1 to 64 of A-Z a-z 0-9 . _ -, got '\(nodeName)'\(env.environment[Self.prefix + "NODE_NAME"] == nil ? " (the host name)" : "")")
        }
        // At least 2 s: heartbeats go every second, so one late heartbeat must not read as a death.
        nodeTimeoutSeconds = try env.duration("NODE_TIMEOUT", default: 10, 2...3600)
        retentionSeconds = try env.string("RETENTION", default: "7d") == "forever"
            ? nil : try env.duration("RETENTION", default: 7 * 86_400, 60...(3650 * 86_400))
        hostConcurrency = try env.int("HOST_CONCURRENCY", default: 4, 1...1000)
        breakerThreshold = try env.int("BREAKER_THRESHOLD", default: 5, 1...1000)
        breakerCooldownSeconds = try env.duration("BREAKER_COOLDOWN", default: 30, 0.1...86_400)
        pollIntervalSeconds = try env.duration("POLL_INTERVAL", default: 1, 0.01...60)
        let durabilityText = try env.string("DURABILITY", default: "full")
        guard let durability = Durability(rawValue: durabilityText) else {
            throw ConfigError(variable: Self.prefix + "DURABILITY", message: "must be full or normal, got '\(durabilityText)'")
        }
        self.durability = durability
        maxDatabaseBytes = try env.bytes("MAX_DB_SIZE", default: 4 << 30, (1 << 20)...(1 << 44))
        clientStorageLimit = try env.bytes("CLIENT_STORAGE_LIMIT", default: maxDatabaseBytes / 8, (64 << 10)...(1 << 44))
        let pruneAt = try env.string("SYNC_PRUNE_AT", default: "90%")
        if pruneAt == "off" {
            syncPruneAt = nil
        } else {
            let digits = pruneAt.hasSuffix("%") ? String(pruneAt.dropLast()) : pruneAt
            guard let percent = Int(digits), (50...99).contains(percent) else {
                throw ConfigError(variable: Self.prefix + "SYNC_PRUNE_AT", message: "must be a percentage from 50% to 99%, or off; got '\(pruneAt)'")
            }
            syncPruneAt = Double(percent) / 100
        }
        let secret = try env.string("WEBHOOK_SECRET", default: "")
        webhookSecret = secret.isEmpty ? nil : secret
        // Never quoted back: a mistyped secret is still mostly the secret.
        if !secret.isEmpty && WebhookSecretText.key(secret) == nil {
            throw ConfigError(variable: Self.prefix + "WEBHOOK_SECRET", message: "must be \(WebhookSecretText.rule) (the value is not shown)")
        }
        let databaseFolder = databasePath.contains("/") ? String(databasePath[..<databasePath.lastIndex(of: "/")!]) : "."
        webhookSecretFile = try env.string("WEBHOOK_SECRET_FILE", default: (databaseFolder.isEmpty ? "/" : databaseFolder) + "/webhook-secret")
        // WORKFCGI_NGINX_USER is the older name of a one-user list; naming both would leave one of them unread.
        let legacyUser = try env.string("NGINX_USER", default: "")
        let users = try env.list("FRONTEND_USERS", default: legacyUser.isEmpty ? ["www-data"] : [legacyUser])
        if !legacyUser.isEmpty && environment[Self.prefix + "FRONTEND_USERS"] != nil {
            throw ConfigError(variable: Self.prefix + "NGINX_USER", message: "set WORKFCGI_FRONTEND_USERS or WORKFCGI_NGINX_USER, not both")
        }
        frontendUsers = users
        operatorAddresses = try env.list("OPERATOR_ADDRESSES", default: ["127.0.0.1/32", "::1/128"])
        operatorHosts = try env.list("OPERATOR_HOSTS", default: ["localhost", "127.0.0.1", "[::1]"]).map { $0.lowercased() }
        let previous = try env.string("WEBHOOK_SECRET_PREVIOUS", default: "")
        webhookSecretPrevious = previous.isEmpty ? nil : previous
        if !previous.isEmpty && WebhookSecretText.key(previous) == nil {
            throw ConfigError(variable: Self.prefix + "WEBHOOK_SECRET_PREVIOUS", message: "must be \(WebhookSecretText.rule) (the value is not shown)")
        }
        callbackAllowCIDRs = try env.list("CALLBACK_ALLOW_CIDRS", default: [])
        let level = try env.string("LOG_LEVEL", default: "info")
        guard let logLevel = LogLevel(rawValue: level) else {
            let levels = LogLevel.allCases.map(\.rawValue)
            throw ConfigError(variable: Self.prefix + "LOG_LEVEL", message: "must be one of \(levels.joined(separator: ", "))")
        }
        self.logLevel = logLevel
        let format = try env.string("LOG_FORMAT", default: "text")
        guard let logFormat = LogFormat(rawValue: format) else {
            throw ConfigError(variable: Self.prefix + "LOG_FORMAT", message: "must be text or json, got '\(format)'")
        }
        self.logFormat = logFormat
        accessLog = try env.bool("ACCESS_LOG", default: true)
        slowLogSeconds = try env.string("SLOW_LOG", default: "off") == "off"
            ? nil : try env.duration("SLOW_LOG", default: 0, 0.001...3600)
        handlers = try HandlerSettings(env)
        // Every variable is named once, where it is read: what was not read is unknown (a typo, most likely).
        let known = env.names
        for name in environment.keys.sorted() where name.hasPrefix(Self.prefix) && !known.contains(name) {
            throw ConfigError(variable: name, message: "unknown variable (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard leaseSeconds > callbackTimeoutSeconds else {
            throw ConfigError(
                variable: Self.prefix + "LEASE", message: "must be longer than WORKFCGI_CALLBACK_TIMEOUT, or jobs are claimed twice")
        }
        // A node's claim loop must come round well within the time that declares a node dead.
        guard pollIntervalSeconds <= nodeTimeoutSeconds / 2 else {
            let (poll, timeout) = (environment[Self.prefix + "POLL_INTERVAL"] ?? "1s", environment[Self.prefix + "NODE_TIMEOUT"] ?? "10s")
            throw ConfigError(
                variable: Self.prefix + "POLL_INTERVAL",
                message: "'\(poll)' is more than half of WORKFCGI_NODE_TIMEOUT='\(timeout)': make it at most half, or raise the timeout")
        }
        // A handler still running when its job's lease ran out would be run a second time by the next claim.
        guard handlers.folder == nil || leaseSeconds > handlers.longestRunSeconds else {
            throw ConfigError(
                variable: Self.prefix + "LEASE",
                message: "must be longer than the longest WORKFCGI_HANDLER_TIMEOUT(S) plus \(Int(HandlerSettings.killGraceSeconds)) s, or handlers run twice")
        }
    }
}

extension Settings {
    /// WORKFCGI_NODE_NAME's form: it goes into /metrics labels, logs and the page unescaped by design.
    public static func isNodeName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
            }
    }

    /// gethostname(2); empty when it fails (which the name check then refuses, naming the variable).
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A configuration problem, naming the variable.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var variable: String
    public var message: String
    public var description: String { "\(variable): \(message)" }
    public init(variable: String, message: String) {
        self.variable = variable
        self.message = message
    }
}

/// WORKFCGI_LOG_LEVEL: swift-log's levels, by the same names (Config links no logging library).
public enum LogLevel: String, CaseIterable, Sendable {
    case trace, debug, info, notice, warning, error, critical
}

/// WORKFCGI_LOG_FORMAT: `text` (swift-log's line format) or `json` (one object per line, for log shippers).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}
