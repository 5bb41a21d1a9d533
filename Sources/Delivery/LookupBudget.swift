/// Admission for callback host lookups. getaddrinfo cannot be cancelled: a lookup past its deadline still
/// holds its thread until the system resolver gives up (resolv.conf's timeout × attempts, per query), so the
/// budget counts threads, not answers, and bounds how many one client's lookups may hold and how many all
/// may. A client whose names never answer fills its own share and queue; others still get theirs.
/// Pure state; the caller keeps it in a lock and runs the threads.
public struct LookupBudget: Sendable {
    public struct Options: Sendable, Equatable {
        /// Lookup threads at once, all clients together.
        public var total: Int
        /// Lookup threads one client's lookups may hold at once.
        public var perClient: Int
        /// Lookups one client may have waiting for a thread; past that they are refused.
        public var queuePerClient: Int

        public init(total: Int, perClient: Int, queuePerClient: Int? = nil) {
            self.total = max(1, total)
            self.perClient = max(1, min(perClient, self.total))
            self.queuePerClient = queuePerClient ?? self.perClient * 8
        }
    }

    public enum Admission: Sendable, Equatable {
        /// Start the lookup now, on a thread of its own.
        case start
        /// Wait for a thread; `finish` names it when it may start (its deadline may come first: `withdraw`).
        case queued
        /// Not looked up at all: the client has too many lookups running and waiting.
        case refused(running: Int, waiting: Int)
    }

    public let options: Options
    private(set) var running: [String: Int] = [:]
    private(set) var total = 0
    /// Waiting lookups in arrival order; `finish` takes the first whose client has a thread free.
    private var waiting: [(id: UInt64, client: String)] = []
    private var waitingByClient: [String: Int] = [:]

    public init(options: Options) {
        self.options = options
    }

    /// Lookup threads running now (their deadlines may have passed).
    public var threads: Int { total }

    /// Asks for a thread for lookup `id` on behalf of `client`.
    public mutating func request(_ id: UInt64, client: String) -> Admission {
        let mine = running[client, default: 0]
        if mine < options.perClient && total < options.total && waitingByClient[client, default: 0] == 0 {
            running[client] = mine + 1
            total += 1
            return .start
        }
        let queued = waitingByClient[client, default: 0]
        guard queued < options.queuePerClient else { return .refused(running: mine, waiting: queued) }
        waiting.append((id, client))
        waitingByClient[client] = queued + 1
        return .queued
    }

    /// Lookup `id`'s deadline passed: if it is still waiting, it leaves the queue (true); if it is running,
    /// its thread stays counted until `finish` (false).
    public mutating func withdraw(_ id: UInt64) -> Bool {
        guard let i = waiting.firstIndex(where: { $0.id == id }) else { return false }
        let client = waiting.remove(at: i).client
        unqueue(client)
        return true
    }

    /// A lookup thread of `client` ended. Returns the waiting lookup that takes a thread now, if any
    /// (at most one: one thread was freed).
    public mutating func finish(client: String) -> UInt64? {
        guard let mine = running[client], mine > 0 else { return nil }
        running[client] = mine > 1 ? mine - 1 : nil
        total -= 1
        guard let i = waiting.firstIndex(where: { running[$0.client, default: 0] < options.perClient }) else { return nil }
        let next = waiting.remove(at: i)
        unqueue(next.client)
        running[next.client, default: 0] += 1
        total += 1
        return next.id
    }

    private mutating func unqueue(_ client: String) {
        let left = waitingByClient[client, default: 1] - 1
        waitingByClient[client] = left > 0 ? left : nil
    }
}
