import CSystem
import CCurl
import Foundation
import Synchronization

/// Runs callback transfers concurrently on one thread with libcurl's multi interface, so waiting on the
/// network never occupies a compute worker: a thousand receivers that never answer cost a thousand sockets
/// and timers, not a thousand threads, and a fast receiver is served meanwhile. The multi handle also keeps
/// connections to a host alive between callbacks.
public final class CallbackDispatcher: @unchecked Sendable {
    public typealias Completion = @Sendable (AttemptResult) -> Void

    private let multi: UnsafeMutableRawPointer
    private let inbox = Mutex<[(CallbackClient.Transfer, Completion)]>([])
    private let stopping = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)
    private let finished = DispatchSemaphore(value: 0)
    /// Owned by the loop thread.
    private var running: [UnsafeMutableRawPointer: (CallbackClient.Transfer, Completion)] = [:]

    public init() {
        multi = curl_multi_init()
    }

    deinit { curl_multi_cleanup(multi) }

    /// Transfers submitted and not yet completed.
    public var inFlight: Int { count.load(ordering: .relaxed) }

    /// Starts the transfer; `completion` runs on the dispatcher's thread when it ends (keep it short).
    public func submit(_ transfer: CallbackClient.Transfer, completion: @escaping Completion) {
        count.add(1, ordering: .relaxed)
        inbox.withLock { $0.append((transfer, completion)) }
        curl_multi_wakeup(multi)
    }

    public func start() {
        let thread = Thread { [self] in
            workfcgi_name_thread("callbacks")
            loop()
            finished.signal()
        }
        thread.start()
    }

    /// Lets the transfers in flight finish (each is bounded by its timeout), then ends the thread.
    public func stopAndWait() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        curl_multi_wakeup(multi)
        finished.wait()
    }

    private func loop() {
        while true {
            for (transfer, completion) in inbox.withLock({ q in defer { q.removeAll() }; return q }) {
                running[transfer.handle] = (transfer, completion)
                if curl_multi_add_handle(multi, transfer.handle) != CURLM_OK {
                    running[transfer.handle] = nil
                    count.subtract(1, ordering: .relaxed)
                    completion(AttemptResult(httpStatus: nil, error: "curl_multi_add_handle failed"))
                }
            }
            var active: Int32 = 0
            curl_multi_perform(multi, &active)
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
                let code = message.pointee.data.result
                curl_multi_remove_handle(multi, handle)
                if let (transfer, completion) = running.removeValue(forKey: handle) {
                    count.subtract(1, ordering: .relaxed)
                    completion(CallbackClient.result(of: transfer, code: code))
                }
            }
            if stopping.load(ordering: .sequentiallyConsistent) && running.isEmpty && inbox.withLock({ $0.isEmpty }) { return }
            var ready: Int32 = 0
            curl_multi_poll(multi, nil, 0, 1000, &ready)
        }
    }
}
