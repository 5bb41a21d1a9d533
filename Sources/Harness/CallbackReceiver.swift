import FlyingFox
import Foundation
import Synchronization

/// One callback as the receiver saw it.
public struct ReceivedCallback: Sendable {
    public var path: String
    public var webhookID: String
    public var timestamp: String
    public var signature: String
    public var body: [UInt8]
    public var receivedAt: Date
    /// The status the receiver answered with.
    public var answered: Int
}

/// A real HTTP server on loopback that receives callbacks, used by loadgen and the integration tests.
/// The path chooses the behaviour, so one receiver can play every kind of endpoint:
/// - `/ok/...`: 200.
/// - `/fail/N/...`: 500 for the first N attempts of each webhook-id, then 200.
/// - `/status/S/...`: always S (e.g. 410, 503); `/status/S/after/SECONDS/...` adds a Retry-After.
/// - `/slow/MS/...`: waits MS milliseconds, then 200.
/// - `/redirect/...`: 302 to `/ok/redirected` (a sender must not follow it).
/// - `/abort/...`: 500 with `webhook-delivery: abort-message` (the receiver asks for no more retries).
public final class CallbackReceiver: Sendable {
    private let server: HTTPServer
    private let task = Mutex<Task<Void, any Error>?>(nil)
    private let state = Mutex<(calls: [ReceivedCallback], attemptsByID: [String: Int])>(([], [:]))

    /// Fraction of deliveries answered 500 at random (to show retries at work), and a delay before answering.
    private let failRate: Double
    private let delayMilliseconds: Int

    /// Listens on `host` (an IPv4 loopback address) and `port` (0 picks a free one).
    public init(host: String = "127.0.0.1", port: UInt16 = 0, failRate: Double = 0, delayMilliseconds: Int = 0) throws {
        server = HTTPServer(address: try .inet(ip4: host, port: port), timeout: 30, logger: .disabled)
        self.failRate = failRate
        self.delayMilliseconds = delayMilliseconds
    }

    /// Starts listening and returns the port.
    public func start() async throws -> UInt16 {
        await server.appendRoute("POST *") { [self] request in
            try await self.handle(request)
        }
        let server = self.server
        task.withLock { $0 = Task { try await server.run() } }
        try await server.waitUntilListening(timeout: 10)
        guard case .ip4(_, let port) = await server.listeningAddress else {
            throw CancellationError()
        }
        return port
    }

    public func stop() async {
        await server.stop(timeout: 1)
        task.withLock { $0?.cancel() }
    }

    /// Stops without waiting, for a `defer` (which cannot `await`): cancelling the server's task closes the
    /// listening socket and ends the connections in flight.
    public func stopNow() {
        task.withLock { $0?.cancel() }
    }

    /// Every callback received so far, in arrival order.
    public var calls: [ReceivedCallback] { state.withLock { $0.calls } }

    /// The callbacks answered with 2xx, i.e. delivered.
    public var delivered: [ReceivedCallback] { calls.filter { (200...299).contains($0.answered) } }

    /// Waits until `condition` holds for the received calls, or `timeout` seconds pass.
    @discardableResult
    public func wait(timeout: Double, until condition: @Sendable ([ReceivedCallback]) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(calls) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition(calls)
    }

    private func handle(_ request: HTTPRequest) async throws -> HTTPResponse {
        let body = try await request.bodyData
        let id = request.headers[HTTPHeader("webhook-id")] ?? ""
        let attempt = state.withLock { s -> Int in
            s.attemptsByID[id, default: 0] += 1
            return s.attemptsByID[id, default: 0]
        }
        let parts = request.path.split(separator: "/").map(String.init)
        var status = 200
        var headers: [HTTPHeader: String] = [:]
        switch parts.first {
        case "fail":
            let failures = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            status = attempt <= failures ? 500 : 200
        case "status":
            status = parts.count > 1 ? Int(parts[1]) ?? 500 : 500
            if parts.count > 3, parts[2] == "after" { headers[HTTPHeader("Retry-After")] = parts[3] }
        case "abort":
            status = 500
            headers[HTTPHeader("webhook-delivery")] = "abort-message"
        case "redirect":
            status = 302
            headers[HTTPHeader("Location")] = "/ok/redirected"
        case "slow":
            let ms = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            try await Task.sleep(for: .milliseconds(ms))
        default:
            if delayMilliseconds > 0 { try await Task.sleep(for: .milliseconds(delayMilliseconds)) }
            if failRate > 0 && Double.random(in: 0..<1) < failRate { status = 500 }
        }
        let call = ReceivedCallback(
            path: request.path, webhookID: id, timestamp: request.headers[HTTPHeader("webhook-timestamp")] ?? "",
            signature: request.headers[HTTPHeader("webhook-signature")] ?? "", body: Array(body), receivedAt: Date(),
            answered: status)
        state.withLock { $0.calls.append(call) }
        return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: status < 300 ? "OK" : "Error"), headers: HTTPHeaders(headers))
    }
}
