import Foundation
import LocalFiles
import Logging
import Synchronization
import WorkEngine

#if canImport(Glibc)
import Glibc
#endif

/// The handlers in WORKFCGI_HANDLERS_DIR: each executable regular file whose name is a `HandlerName`. Read at
/// start, on `reload()` (SIGHUP), and when the folder changed (its mtime, looked at at most once a second
/// by a lookup). Nothing another user could change is run: the folder and each file must be root's or this
/// user's and closed to writes by others, and a file is checked again just before every run.
public final class HandlerRegistry: Sendable {
    public let folder: String
    private let logger: Logger
    private let state: Mutex<State>

    struct State {
        var handlers: [String: String] = [:]  // name -> path
        var folderChange: timespec?
        var lookedAt: UInt64 = 0
    }

    /// One file the scan did not take, and why.
    public struct Skipped: Sendable, Equatable {
        public var name: String
        public var reason: String
        /// A refusal (an unsafe file) rather than a file that is simply no handler.
        public var refused: Bool
    }

    /// What a scan found.
    public struct Scan: Sendable, Equatable {
        public var handlers: [String: String]
        public var skipped: [Skipped]
    }

    /// Throws (a `LocalPathError`, naming the fix) when the folder itself cannot be trusted: the daemon
    /// does not start with handlers someone else could have put there.
    public init(folder: String, logger: Logger) throws {
        self.folder = folder
        self.logger = logger
        let scan = try Self.scan(folder)
        state = Mutex(State(handlers: scan.handlers, folderChange: Self.changeTime(folder), lookedAt: Self.now()))
        report(scan)
    }

    public var names: [String] { state.withLock { $0.handlers.keys.sorted() } }

    /// The path of the handler called `name`, after a cheap look at whether the folder changed.
    public func path(of name: String) -> String? {
        let now = Self.now()
        let stale = state.withLock { state -> Bool in
            guard now &- state.lookedAt >= 1_000_000_000 else { return false }
            state.lookedAt = now
            return !Self.same(state.folderChange, Self.changeTime(folder))
        }
        if stale { reload() }
        return state.withLock { $0.handlers[name] }
    }

    /// Reads the folder again. A folder that cannot be trusted any more leaves no handler at all.
    public func reload() {
        let change = Self.changeTime(folder)
        do {
            let scan = try Self.scan(folder)
            state.withLock {
                $0.handlers = scan.handlers
                $0.folderChange = change
            }
            report(scan)
        } catch {
            state.withLock {
                $0.handlers = [:]
                $0.folderChange = change
            }
            logger.error("handlers folder refused: no handler is served until it is fixed (then SIGHUP)", metadata: ["error": "\(error)"])
        }
    }

    private func report(_ scan: Scan) {
        for skip in scan.skipped {
            if skip.refused {
                logger.error("handler refused", metadata: ["file": "\(skip.name)", "reason": "\(skip.reason)"])
            } else {
                logger.warning("not a handler, ignored", metadata: ["file": "\(skip.name)", "reason": "\(skip.reason)"])
            }
        }
        logger.info("handlers", metadata: ["folder": "\(folder)", "names": "\(scan.handlers.keys.sorted().joined(separator: ","))"])
    }

    /// Why the file at `path` may not be run now, or nil (the check before every run).
    public static func refusal(_ path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return "\(path): \(String(cString: strerror(errno)))" }
        return refusal(path, PathFacts(info), executable: info.st_mode & 0o111 != 0)
    }

    static func refusal(_ path: String, _ facts: PathFacts, executable: Bool) -> String? {
        let uid = geteuid()
        switch LocalPathRules(uid: uid).trustedProgram(facts) {
        case nil: return executable ? nil : "\(path) is not executable: chmod +x it to make it a handler"
        case .writableByOthers(let mode)?:
            return "\(path) can be written by other users (mode 0\(String(mode, radix: 8))): chmod go-w it, after checking what it is"
        case let reason?: return LocalPathError(path: path, reason: reason, uid: uid).description
        }
    }

    /// Reads `folder`: checks it (and the folders above it), then each entry.
    public static func scan(_ folder: String) throws -> Scan {
        try LocalFolder.check(folder)
        guard let dir = opendir(folder) else { throw LocalPathError(path: folder, reason: .system("opendir", errno), uid: geteuid()) }
        defer { closedir(dir) }
        var handlers: [String: String] = [:]
        var skipped: [Skipped] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            let path = folder + "/" + name
            var info = stat()
            guard fstatat(dirfd(dir), name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }  // gone meanwhile
            let facts = PathFacts(info)
            if facts.kind == .directory { continue }
            guard HandlerName.isValid(name) else {
                skipped.append(Skipped(name: name, reason: "not a handler name: a-z, 0-9, _ and -, starting with a letter or digit", refused: false))
                continue
            }
            if facts.kind == .regular && info.st_mode & 0o111 == 0 {
                skipped.append(Skipped(name: name, reason: "not executable", refused: false))
                continue
            }
            if let why = refusal(path, facts, executable: true) {
                skipped.append(Skipped(name: name, reason: why, refused: true))
                continue
            }
            handlers[name] = path
        }
        return Scan(handlers: handlers, skipped: skipped.sorted { $0.name < $1.name })
    }

    /// The folder's last change: ctime moves with every entry added, removed or renamed (mtime) and with the
    /// folder's own mode and owner. nil when it cannot be read.
    private static func changeTime(_ folder: String) -> timespec? {
        var info = stat()
        return lstat(folder, &info) == 0 ? info.st_ctim : nil
    }

    private static func same(_ a: timespec?, _ b: timespec?) -> Bool {
        a?.tv_sec == b?.tv_sec && a?.tv_nsec == b?.tv_nsec
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
