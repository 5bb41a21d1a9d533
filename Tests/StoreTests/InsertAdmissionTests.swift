import Foundation
import JSON
import Testing
import WorkEngine

@testable import Store

/// PostgreSQL's batch of new rows decided at once: each row meets what the database held plus the rows before
/// it in the same batch, exactly as if they had come one at a time.
@Suite struct InsertAdmissionTests {
    let now: UnixMillis = 1_800_000_000_000

    func job(_ id: String, client: String = "a", key: String? = nil, input: String = "{}", backlog: Int = 100, perClient: Int = .max,
             storage: Int64 = .max, createdAt: UnixMillis? = nil) -> NewRow {
        let j = NewJob(
            id: id, spec: .hash(input: "x", iterations: 1), input: [:], callbackURL: "http://h.example/", idempotencyKey: key,
            createdAt: createdAt ?? now, client: client)
        return NewRow(
            kind: .job(j, spec: "{}", backlogLimit: backlog, clientLimit: perClient), input: input, bytes: 100, reserve: 40,
            clientStorageLimit: storage)
    }

    func sync(_ id: String, client: String = "a", bytes: Int64, storage: Int64 = .max) -> NewRow {
        let r = SyncRecord(id: id, op: .text, input: [:], result: [:], createdAt: now, startedAt: now, completedAt: now, durationMs: 1, client: client)
        return NewRow(kind: .sync(r, result: "{}"), input: "{}", bytes: bytes, reserve: 0, clientStorageLimit: storage)
    }

    func empty(bound: Int64? = nil) -> InsertAdmission {
        InsertAdmission(backlog: 0, usage: StorageUsage(usedBytes: 0, reservedBytes: 0, boundBytes: bound), clients: [:], keys: [:])
    }

    @Test func theBacklogBoundCountsTheRowsBeforeInTheBatch() {
        var a = empty()
        a.backlog = 1
        #expect(a.admit(job("1", backlog: 3)) == .insert(turn: 0))
        #expect(a.admit(job("2", backlog: 3)) == .insert(turn: 1))
        #expect(a.admit(job("3", backlog: 3)) == .answer(.backlogFull(depth: 3)))
        #expect(a.admit(sync("s", bytes: 10)) == .insert(turn: nil), "sync records are not in the backlog")
    }

    @Test func turnsFollowTheClientsUnfinishedJobs() {
        var a = empty()
        a.clients["a"] = .init(bytes: 0, lowTurn: 5, highTurn: 6)
        #expect(a.admit(job("1", perClient: 3)) == .insert(turn: 7))
        #expect(a.admit(job("2", perClient: 3)) == .answer(.clientBacklogFull(depth: 3)))
        #expect(a.admit(job("3", client: "b", perClient: 3)) == .insert(turn: 0))
        #expect(a.admit(job("4", client: "b", perClient: 3)) == .insert(turn: 1))
    }

    @Test func sharesAndTheSizeBoundAddUp() {
        var a = empty(bound: 1_000)
        a.usage.usedBytes = 700
        #expect(a.admit(job("1", storage: 250)) == .insert(turn: 0))
        #expect(a.usage.usedBytes == 760 && a.usage.reservedBytes == 40)
        #expect(a.admit(job("2", storage: 250)) == .insert(turn: 1))
        #expect(a.admit(job("3", storage: 250)) == .answer(.clientStorageFull(storedBytes: 200)))
        #expect(a.admit(sync("s", bytes: 60, storage: 250)) == .clientStorageFull(storedBytes: 200))
        #expect(a.admit(sync("t", client: "b", bytes: 20)) == .insert(turn: nil))
        guard case .storeFull(let usage) = a.admit(sync("u", client: "c", bytes: 81)) else { Issue.record("not full"); return }
        #expect(usage.usedBytes + usage.reservedBytes == 920)
        #expect(a.admit(job("4", client: "d")) == .storeFull(usage), "what is refused takes nothing")
    }

    @Test func anIdempotencyKeyTakenEarlierInTheBatchAnswersItsJob() {
        var a = empty()
        #expect(a.admit(job("1", key: "k", input: "A")) == .insert(turn: 0))
        #expect(a.admit(job("2", key: "k", input: "A")) == .answer(.duplicate(id: "1")))
        #expect(a.admit(job("3", key: "k", input: "B")) == .answer(.keyReused(id: "1")))
        #expect(a.backlog == 1)
    }

    @Test func aKeyOlderThanADayIsReleasedOnce() {
        var a = empty()
        a.keys["k"] = .init(id: "old", createdAt: now - InsertAdmission.keyLifetime - 1, input: "A")
        a.keys["j"] = .init(id: "recent", createdAt: now - 1_000, input: "A")
        #expect(a.admit(job("1", key: "k", input: "A")) == .insert(turn: 0))
        #expect(a.admit(job("2", key: "k", input: "A")) == .answer(.duplicate(id: "1")))
        #expect(a.admit(job("3", key: "j", input: "A")) == .answer(.duplicate(id: "recent")))
        #expect(a.keysReleased == ["old"])
    }

    @Test func aRefusedJobTakesNoKey() {
        var a = empty()
        a.backlog = 5
        #expect(a.admit(job("1", key: "k", backlog: 5)) == .answer(.backlogFull(depth: 5)))
        #expect(a.keys["k"] == nil)
    }

    @Test func arraysQuoteEverything() {
        #expect(postgresArray([]) == "{}")
        #expect(postgresArray(["a", nil, "b\"c\\d", "", "NULL", "{x,y}"]) == #"{"a",NULL,"b\"c\\d","","NULL","{x,y}"}"#)
    }
}
