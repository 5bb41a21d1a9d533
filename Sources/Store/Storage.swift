/// Who decides the database's size bound (WORKFCGI_MAX_DB_SIZE). SQLite's max_page_count is per connection
/// and follows the file once another connection has grown it, so it cannot be the bound between two
/// processes: the bound is kept in the database (settings row `max_db_size`), one value for both.
public enum SizeBound: Sendable, Equatable {
    /// The front door (workfcgi): stores `bytes` as the bound when it opens the database, and refuses new rows
    /// (async jobs, sync records) once what is stored plus what is reserved would pass it.
    case sets(Int64)
    /// deliveryd: follows the stored bound (`fallback` until one is stored), re-read by `storageUsage()`, and
    /// may write past it by `headroom`: the bookkeeping of jobs already accepted must always fit.
    case follows(fallback: Int64)

    /// Room beyond the bound for deliveryd's own writes (attempts, status changes, page splits). Results of
    /// accepted jobs do not need it: their reserve is inside the bound already.
    public static func headroom(_ bound: Int64) -> Int64 { max(bound / 20, 2 << 20) }

    static let settingKey = "max_db_size"
}

/// How full the store is: pages in use (not free-listed), what accepted jobs hold in reserve for their
/// results, and the bound. Pure; read with `SQLiteStore.storageUsage()`.
public struct StorageUsage: Sendable, Equatable {
    public var usedBytes: Int64
    public var reservedBytes: Int64
    /// The size bound in force; nil when the store has none.
    public var boundBytes: Int64?
    /// The last new row this process refused for the bound, if any.
    public var refusal: Refusal?

    /// When a new row was refused for the bound, and what was used plus reserved then.
    public struct Refusal: Sendable, Equatable {
        public var at: UnixMillis
        public var bytes: Int64
        public init(at: UnixMillis, bytes: Int64) {
            self.at = at
            self.bytes = bytes
        }
    }

    public init(usedBytes: Int64, reservedBytes: Int64, boundBytes: Int64?, refusal: Refusal? = nil) {
        self.usedBytes = usedBytes
        self.reservedBytes = reservedBytes
        self.boundBytes = boundBytes
        self.refusal = refusal
    }

    /// Used plus reserved, as a fraction of the bound (0 without one).
    public var fraction: Double {
        guard let bound = boundBytes, bound > 0 else { return 0 }
        return Double(usedBytes + reservedBytes) / Double(bound)
    }

    /// Whether a new row of `bytes` (with its result's reserve) still fits under the bound.
    public func admits(_ bytes: Int64) -> Bool {
        guard let bound = boundBytes else { return true }
        return usedBytes + reservedBytes + bytes <= bound
    }

    public enum State: String, Sendable {
        case ok
        /// At or above `nearlyAt` of the bound: deliveryd prunes old sync records.
        case nearlyFull = "nearly_full"
        /// New rows are refused: less than 1% of the bound (or 64 KiB) is left, or one was refused in the
        /// last minute and no room has been made since.
        case full
    }

    public func state(nearlyAt: Double, now: UnixMillis) -> State {
        guard let bound = boundBytes else { return .ok }
        let taken = usedBytes + reservedBytes
        if bound - taken < max(bound / 100, 64 << 10) { return .full }
        if let r = refusal, now - r.at < 60_000, taken >= r.bytes { return .full }
        return fraction >= nearlyAt ? .nearlyFull : .ok
    }
}

/// A client's rows (input, job spec and result, sync records included, plus the reserve of its unfinished
/// jobs' results) would pass WORKFCGI_CLIENT_STORAGE_LIMIT: nothing was written.
public struct ClientStorageFull: Error, Sendable, Equatable, CustomStringConvertible {
    public var storedBytes: Int64
    public var limitBytes: Int64
    public var description: String { "client storage full: \(storedBytes) of \(limitBytes) bytes" }
    public init(storedBytes: Int64, limitBytes: Int64) {
        self.storedBytes = storedBytes
        self.limitBytes = limitBytes
    }
}

/// The front door's running view of how full the store is, so that a new row far from the bound needs no
/// read of the file's size. An exact reading (pages in use, reserve: three statements, about a tenth of an
/// /async request's instructions) is taken at most every `maxAge` ms; in between, the rows this process
/// admitted are added to it. What it cannot see — deliveryd's writes since the reading — is covered by
/// `slack`, far below deliveryd's headroom beyond the bound; within `slack` of the bound every row reads
/// exactly. Pure: `SQLiteStore` feeds it readings and the clock.
public struct RoomEstimate: Sendable, Equatable {
    public static let maxAge: Int64 = 100
    /// Used plus reserved at the last reading, plus what was admitted since.
    public private(set) var taken: Int64
    public private(set) var readAt: UnixMillis

    public init(reading: StorageUsage, at now: UnixMillis) {
        taken = reading.usedBytes + reading.reservedBytes
        readAt = now
    }

    /// Room kept free of estimates: what deliveryd may write in `maxAge` ms, with a wide margin (1,000
    /// attempts there are about 300 KB; its headroom beyond the bound is at least 2 MiB).
    public static func slack(_ bound: Int64) -> Int64 { max(bound / 50, 1 << 20) }

    /// Whether a row of `bytes` fits on this estimate alone; false means: take an exact reading.
    public func admits(_ bytes: Int64, bound: Int64, now: UnixMillis) -> Bool {
        now - readAt < Self.maxAge && now >= readAt && taken + bytes + Self.slack(bound) <= bound
    }

    public mutating func admitted(_ bytes: Int64) { taken += bytes }
}
