import JSON
import Store
import WorkEngine

/// deliveryd's nodes as workfcgi shows them (/healthz, /metrics, /ui, /status): the latest row of each node
/// name, each judged by the one liveness rule (`NodeStatus.liveness`, WORKFCGI_NODE_TIMEOUT). The service
/// delivers while any node is alive.
struct DeliverydNodes: Sendable {
    struct Node: Sendable {
        var status: NodeStatus
        var liveness: NodeStatus.Liveness
        /// Since its last heartbeat (a stopped node's: its stop).
        var ageMs: Int64
    }

    /// By name.
    var nodes: [Node]
    /// Every row's id to its name, older starts included (a job in hand names its owner by id).
    var names: [String: String]

    init(_ rows: [NodeStatus], now: Int64, timeoutMillis: Int64) {
        var latest: [String: NodeStatus] = [:]
        for row in rows where latest[row.name].map({ ($0.startedAt, $0.heartbeatAt) < (row.startedAt, row.heartbeatAt) }) ?? true {
            latest[row.name] = row
        }
        nodes = latest.values.sorted { $0.name < $1.name }.map { row in
            Node(status: row, liveness: row.liveness(now: now, timeoutMillis: timeoutMillis), ageMs: max(0, now - (row.stoppedAt ?? row.heartbeatAt)))
        }
        names = Dictionary(rows.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
    }

    var alive: [Node] { nodes.filter { $0.liveness == .alive } }
    var anyAlive: Bool { nodes.contains { $0.liveness == .alive } }
    /// Jobs the alive nodes are working on.
    var activeWorkers: Int { alive.reduce(0) { $0 + $1.status.activeWorkers } }
    /// The alive nodes' open circuits (each node keeps its own breakers).
    var circuits: [Circuit] { alive.flatMap(\.status.circuits) }
    /// The freshest heartbeat's age among nodes not stopped; nil when every node stopped cleanly or none ran.
    var heartbeatAgeMs: Int64? { nodes.filter { $0.liveness != .stopped }.map(\.ageMs).min() }
    /// Every node's handler runs (since each started), summed.
    var handlers: HandlerTally { nodes.reduce(HandlerTally()) { $0.merged(with: $1.status.stats.handlers) } }

    func count(_ liveness: NodeStatus.Liveness) -> Int { nodes.count { $0.liveness == liveness } }

    /// One entry per node, for /healthz (operators) and /status.
    var json: JSONValue {
        .array(
            nodes.map { n in
                [
                    "name": .string(n.status.name), "id": .string(n.status.id), "pid": .number(Double(n.status.pid)),
                    "state": .string(n.liveness.rawValue), "heartbeat_age_ms": .number(Double(n.ageMs)),
                    "jobs_in_hand": .number(Double(n.liveness == .alive ? n.status.activeWorkers : 0)),
                    "open_circuits": .number(Double(n.liveness == .alive ? n.status.circuits.count : 0)),
                    "started_at": .string(Timestamp.iso8601(millis: n.status.startedAt)),
                ]
            })
    }
}
