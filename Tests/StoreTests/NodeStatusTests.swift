import Testing

@testable import Store

/// The one rule that says a deliveryd node is dead (WORKFCGI_NODE_TIMEOUT), which /healthz, /metrics, /ui and
/// the rescuer's SQL all follow.
@Suite struct NodeStatusTests {
    let now: UnixMillis = 1_000_000

    func node(heartbeat: UnixMillis, stopped: UnixMillis? = nil) -> NodeStatus {
        NodeStatus(id: "n", name: "a", pid: 1, startedAt: 0, heartbeatAt: heartbeat, stoppedAt: stopped)
    }

    @Test func aNodeIsDeadOnceItsHeartbeatIsTheTimeoutOld() {
        #expect(node(heartbeat: now).liveness(now: now, timeoutMillis: 10_000) == .alive)
        #expect(node(heartbeat: now - 9_999).liveness(now: now, timeoutMillis: 10_000) == .alive)
        #expect(node(heartbeat: now - 10_000).liveness(now: now, timeoutMillis: 10_000) == .dead)
        #expect(node(heartbeat: now - 2_000).liveness(now: now, timeoutMillis: 2_000) == .dead, "the timeout decides, not a fixed 10 s")
    }

    @Test func aCleanStopIsStoppedWhateverItsAge() {
        #expect(node(heartbeat: now, stopped: now).liveness(now: now, timeoutMillis: 10_000) == .stopped)
        #expect(node(heartbeat: 0, stopped: 5).liveness(now: now, timeoutMillis: 10_000) == .stopped)
    }

    @Test func theRescuersConditionSaysTheSame() {
        #expect(NodeStatus.aliveSQL(now: "?1", timeout: "?2") == "stopped_at IS NULL AND heartbeat_at > ?1 - ?2")
    }
}
