import Logging
import Store

extension Logger {
    /// The PostgreSQL listener's connection, in the daemon's log: a loss is a warning (the fallback poll goes on
    /// meanwhile), each failed reconnect too, with the delay before the next.
    func listener(_ event: PostgresListener.Event) {
        switch event {
        case .listening(let channel, let pid):
            notice("listening for jobs", metadata: ["channel": "\(channel)", "backend_pid": "\(pid)"])
        case .lost(let why):
            warning("the listening connection was lost; reconnecting (the poll interval wakes deliveryd meanwhile)", metadata: ["error": "\(why)"])
        case .failed(let why, let delay):
            warning("listening failed; trying again", metadata: ["error": "\(why)", "retry_in_s": "\(delay)"])
        }
    }
}
