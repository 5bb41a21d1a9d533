import Foundation

/// One callback attempt on the wire: the body and its Standard Webhooks headers (built by `request`, which
/// is pure: the time is passed in), POSTed through the dispatcher.
struct CallbackSender: Sendable {
    let client: CallbackClient
    let signer: WebhookSigner
    let dispatcher: CallbackDispatcher

    /// The signed POST for `d` sent at `now`. The webhook-id is the job's id, the same on every attempt and
    /// after a restart, so a receiver can drop a callback sent twice.
    static func request(for d: DeliveryState.Delivery, signer: WebhookSigner, at now: Date) -> (body: [UInt8], headers: [(String, String)]) {
        let job = d.job
        let body = CallbackPayload.body(id: job.id, op: job.op, work: d.work, at: now)
        let timestamp = Int(now.timeIntervalSince1970)
        let headers = [
            ("webhook-id", job.id), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signer.signature(id: job.id, timestamp: timestamp, body: body)),
        ]
        return (body, headers)
    }

    /// Signs and starts `s`'s POST. `ended` gets its result and its milliseconds (signing included): on the
    /// dispatcher's thread, or on this one when the transfer could not be prepared.
    func send(_ s: DeliveryState.Send, ended: @escaping @Sendable (AttemptResult, Double) -> Void) {
        let started = DispatchTime.now().uptimeNanoseconds
        let (body, headers) = Self.request(for: s.delivery, signer: signer, at: Date())
        let finish: @Sendable (AttemptResult) -> Void = { result in
            ended(result, Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
        }
        switch client.prepare(target: s.target, body: body, headers: headers) {
        case .success(let transfer): dispatcher.submit(transfer, completion: finish)
        case .failure(let failure): finish(AttemptResult(httpStatus: nil, error: failure.message))
        }
    }
}
