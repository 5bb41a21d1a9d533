import CSystem
import CallbackPolicy
import Foundation
import Synchronization

/// Why a callback host's name gave no usable answer for this attempt (it may next time).
public struct LookupFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// Resolves callback host names for deliveryd's delivery path, never on a compute worker: each lookup runs
/// on a thread of its own, admitted by a `LookupBudget` (per client and in total), and its answer (or its
/// failure) is handed on within the deadline whatever getaddrinfo does. A lookup still stuck at the
/// deadline keeps its thread, counted in the budget, until the system resolver gives up.
public final class NameResolver: Sendable {
    public typealias Lookup = @Sendable (String) -> Result<[IPAddress], LookupFailure>
    public typealias Completion = @Sendable (Result<[IPAddress], LookupFailure>) -> Void

    private struct Pending {
        var host: String
        var client: String
        var completion: Completion
        /// Completed already (its deadline came first): the thread's answer is dropped.
        var done = false
    }

    private struct State {
        var budget: LookupBudget
        var nextID: UInt64 = 0
        var pending: [UInt64: Pending] = [:]
    }

    private let state: Mutex<State>
    private let timeoutSeconds: Double
    private let lookup: Lookup

    public init(budget: LookupBudget.Options, timeoutSeconds: Double, lookup: @escaping Lookup = NameResolver.system) {
        state = Mutex(State(budget: LookupBudget(options: budget)))
        self.timeoutSeconds = timeoutSeconds
        self.lookup = lookup
    }

    /// Lookup threads running now, stuck ones included.
    public var threads: Int { state.withLock { $0.budget.threads } }

    /// Resolves `host` for `client`. `completion` runs exactly once, within the deadline: on the lookup's
    /// thread with its answer, or on a timer's with the failure. Keep it short and off the database.
    public func resolve(_ host: String, client: String, completion: @escaping Completion) {
        let (id, admission) = state.withLock { s -> (UInt64, LookupBudget.Admission) in
            s.nextID += 1
            let admission = s.budget.request(s.nextID, client: client)
            if case .refused = admission { return (s.nextID, admission) }
            s.pending[s.nextID] = Pending(host: host, client: client, completion: completion)
            return (s.nextID, admission)
        }
        switch admission {
        case .refused(let running, let waiting):
            completion(.failure(LookupFailure("host \(host) not looked up: this client has \(running) lookups running and \(waiting) waiting")))
            return
        case .start: spawn(id)
        case .queued: break
        }
        let seconds = timeoutSeconds
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let late = state.withLock { s -> Completion? in
                guard var p = s.pending[id], !p.done else { return nil }
                if s.budget.withdraw(id) {
                    s.pending[id] = nil
                } else {
                    p.done = true
                    s.pending[id] = p
                }
                return p.completion
            }
            late?(.failure(LookupFailure("host \(host) did not resolve within \(Self.format(seconds))")))
        }
    }

    private func spawn(_ id: UInt64) {
        guard let host = state.withLock({ $0.pending[id]?.host }) else { return }
        let thread = Thread { [self] in
            workfcgi_name_thread("lookup")
            let answer = lookup(host)
            let (pending, next) = state.withLock { s -> (Pending?, UInt64?) in
                guard let p = s.pending.removeValue(forKey: id) else { return (nil, nil) }
                return (p, s.budget.finish(client: p.client))
            }
            if let next { spawn(next) }
            if let pending, !pending.done { pending.completion(answer) }
        }
        // getaddrinfo needs little stack; hundreds of stuck lookups should not cost 8 MiB each.
        thread.stackSize = 256 << 10
        thread.start()
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(Int((seconds * 1000).rounded()))ms"
    }

    /// getaddrinfo, both families; the addresses in the order it gives them, without repeats.
    @Sendable public static func system(_ host: String) -> Result<[IPAddress], LookupFailure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &list)
        guard rc == 0 else { return .failure(LookupFailure("host \(host) does not resolve: \(String(cString: gai_strerror(rc)))")) }
        defer { freeaddrinfo(list) }
        var out: [IPAddress] = []
        var node = list
        while let entry = node?.pointee {
            if entry.ai_family == AF_INET, let sa = entry.ai_addr {
                let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                if let ip = withUnsafeBytes(of: a, { IPAddress(bytes: Array($0)) }), !out.contains(ip) { out.append(ip) }
            } else if entry.ai_family == AF_INET6, let sa = entry.ai_addr {
                let a = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                if let ip = withUnsafeBytes(of: a, { IPAddress(bytes: Array($0)) }), !out.contains(ip) { out.append(ip) }
            }
            node = entry.ai_next
        }
        return .success(out)
    }
}
