import Store

/// Clients whose storage share was found used up in the last minute. Only their /sync calls read the share
/// before computing (a read on every /sync cost ~11,000 instructions, 4% of the request, callgrind); every
/// record is still checked exactly when it is written, so a client not listed here whose share is used up
/// gets at most one computation whose record is refused, and is listed from then on. Pure; bounded, so
/// addresses cannot grow it without limit (cleared when full: the exact check at write time still holds).
struct FullShares: Sendable {
    static let memoryMillis: Int64 = 60_000
    static let capacity = 4_096
    private var refusedAt: [String: UnixMillis] = [:]

    /// Whether the share should be read before computing for `client`.
    func suspects(_ client: String, now: UnixMillis) -> Bool {
        guard let at = refusedAt[client] else { return false }
        return now - at < Self.memoryMillis
    }

    mutating func refused(_ client: String, now: UnixMillis) {
        if refusedAt.count >= Self.capacity {
            refusedAt = refusedAt.filter { now - $0.value < Self.memoryMillis }
            if refusedAt.count >= Self.capacity { refusedAt.removeAll() }
        }
        refusedAt[client] = now
    }

    mutating func admitted(_ client: String) { refusedAt[client] = nil }
}
