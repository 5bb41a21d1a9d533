import CSystem

#if canImport(Glibc)
import Glibc
#endif

/// How the daemons create, open and set up the files in their folders: never through a symlink, each file
/// checked to be theirs, modes and owners set through descriptors. (Root running the daemons must never be
/// made to truncate, write or chmod another user's file by a name planted where the daemons look.)
public enum LocalFile {
    static var rules: LocalPathRules { LocalPathRules(uid: geteuid()) }

    /// Opens for reading and writing, creating it when missing, a file only this daemon writes (a lock
    /// file): refuses a symlink, another user's file, a file with a second name; sets `mode` on it.
    public static func openOwn(_ path: String, mode: mode_t = 0o600) throws -> Int32 {
        // O_NONBLOCK: a FIFO or device planted there must not hang the open; it is refused just below.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, mode)
        guard fd >= 0 else { throw failure(path, "open") }
        do {
            try check(fd, path, rules.ownFile)
            guard fchmod(fd, mode) == 0 else { throw failure(path, "fchmod") }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Sets the mode of an existing file of this daemon's (the database, -wal, -shm); false when there is
    /// none. Through an O_PATH descriptor: closing it never drops the locks SQLite holds on that file.
    @discardableResult
    public static func restrict(_ path: String, mode: mode_t) throws -> Bool {
        let fd = workfcgi_open_path_nofollow(path)
        guard fd >= 0 else {
            if errno == ENOENT { return false }
            throw failure(path, "open")
        }
        defer { close(fd) }
        try check(fd, path, rules.ownFile)
        guard workfcgi_fchmod_path(fd, UInt32(mode)) == 0 else { throw failure(path, "chmod") }
        return true
    }

    /// Removes what a predecessor left where this daemon binds a socket, only when it is its own socket;
    /// anything else there is refused, never removed.
    public static func removeStaleSocket(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw failure(path, "lstat")
        }
        if let reason = rules.staleSocket(PathFacts(info)) { throw LocalPathError(path: path, reason: reason, uid: geteuid()) }
        guard unlink(path) == 0 || errno == ENOENT else { throw failure(path, "unlink") }
    }

    /// Gives the socket just bound at `path` its group and mode, checking that what is there is this
    /// daemon's socket. (fchmod on the socket's own descriptor would not change the file.) The folder is
    /// one nobody else can write (`LocalFolder`), so nobody can swap the file between bind and here.
    public static func openSocket(_ path: String, group: gid_t?, mode: mode_t) throws {
        let fd = workfcgi_open_path_nofollow(path)
        guard fd >= 0 else { throw failure(path, "open") }
        defer { close(fd) }
        try check(fd, path, rules.staleSocket)
        // A chown that fails (not root, not a member of that group) leaves this process's group, which
        // suits a front end running as this same user.
        if let group { _ = workfcgi_fchown_group_path(fd, Int32(bitPattern: group)) }
        guard workfcgi_fchmod_path(fd, UInt32(mode)) == 0 else { throw failure(path, "chmod") }
    }

    /// Checks a descriptor's file against `rule`.
    static func check(_ fd: Int32, _ path: String, _ rule: (PathFacts) -> LocalPathError.Reason?) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(path, "fstat") }
        if let reason = rule(PathFacts(info)) { throw LocalPathError(path: path, reason: reason, uid: geteuid()) }
    }

    /// The error for the call that just failed: ELOOP from an O_NOFOLLOW open means a symlink.
    static func failure(_ path: String, _ call: String) -> LocalPathError {
        let code = errno
        return LocalPathError(path: path, reason: code == ELOOP ? .symlink : .system(call, code), uid: geteuid())
    }
}

/// The folders the daemons keep things in, checked at start: a folder another user could write (or swap,
/// through a folder above it) would let them plant names where the daemons create theirs.
public enum LocalFolder {
    /// The run folder: created when missing; refused when it is a symlink, another user's, or open to writes
    /// by others; when it is the daemon's own, set to 0710 with `group` (the front end's), whatever it was:
    /// the front end can reach the sockets inside, but nobody else can list or read anything there.
    public static func prepareRunFolder(_ path: String, group: gid_t?) throws {
        var info = stat()
        if lstat(path, &info) != 0 && errno == ENOENT {
            makeParents(of: path)
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw LocalFile.failure(path, "mkdir") }
        }
        let fd = try open(path)
        defer { close(fd) }
        guard fstat(fd, &info) == 0 else { throw LocalFile.failure(path, "fstat") }
        switch LocalFile.rules.folder(PathFacts(info), enforcing: true) {
        case .refuse(let reason): throw LocalPathError(path: path, reason: reason, uid: geteuid())
        case .accept: break
        case .enforce:
            if let group, info.st_gid != group { _ = fchown(fd, uid_t.max, group) }
            guard fchmod(fd, 0o710) == 0 else { throw LocalFile.failure(path, "fchmod") }
        }
    }

    /// Any other folder the daemons create things in (the database's, the sockets'): it must exist and be
    /// closed to writes by others; its mode is the operator's.
    public static func check(_ path: String) throws {
        let fd = try open(path)
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw LocalFile.failure(path, "fstat") }
        if case .refuse(let reason) = LocalFile.rules.folder(PathFacts(info), enforcing: false) {
            throw LocalPathError(path: path, reason: reason, uid: geteuid())
        }
    }

    /// `path` made absolute against the working folder, "." and ".." resolved as names (for comparing).
    public static func absolute(_ path: String) -> String {
        var parts: [Substring] = []
        let full = path.hasPrefix("/") ? path : workingFolder() + "/" + path
        for part in full.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The folder itself, after checking every folder above it; never through a symlink at its own name.
    static func open(_ path: String) throws -> Int32 {
        try checkAncestors(of: path)
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOTDIR {
                // O_DIRECTORY answers ENOTDIR for a symlink too: say which.
                var info = stat()
                let symlink = lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
                throw LocalPathError(path: path, reason: symlink ? .symlink : .notFolder, uid: geteuid())
            }
            throw LocalFile.failure(path, "open")
        }
        return fd
    }

    /// Walks from / to the folder's parent; a symlink on the way must be trusted, and where it points is
    /// walked the same way.
    static func checkAncestors(of path: String) throws {
        let full = path.hasPrefix("/") ? path : workingFolder() + "/" + path
        var names = full.split(separator: "/").map(String.init).filter { $0 != "." }
        guard !names.isEmpty else { return }
        names.removeLast()
        try walk(names, below: path, depth: 0)
    }

    @discardableResult
    private static func walk(_ names: [String], below: String, depth: Int) throws -> String {
        let rules = LocalFile.rules
        func refuse(_ at: String, _ reason: LocalPathError.Reason) -> LocalPathError {
            LocalPathError(path: at, reason: reason, uid: geteuid(), below: below)
        }
        guard depth < 8 else { throw refuse(names.joined(separator: "/"), .system("realpath", ELOOP)) }
        var info = stat()
        guard lstat("/", &info) == 0 else { throw LocalFile.failure("/", "lstat") }
        if let reason = rules.ancestor(PathFacts(info)) { throw refuse("/", reason) }
        var current = ""  // a real folder already checked; "" is /
        for name in names {
            if name == ".." {
                if let slash = current.lastIndex(of: "/") { current = String(current[..<slash]) }
                continue
            }
            let next = current + "/" + name
            guard lstat(next, &info) == 0 else { throw LocalFile.failure(next, "lstat") }
            let facts = PathFacts(info)
            if let reason = rules.ancestor(facts) { throw refuse(next, reason) }
            if facts.kind == .symlink {
                // The link sits in a checked folder, so only root or the daemon could have made it; where
                // it points is checked like any path.
                guard let resolved = realpath(next, nil) else { throw LocalFile.failure(next, "realpath") }
                let target = String(cString: resolved)
                free(resolved)
                current = try walk(target.split(separator: "/").map(String.init), below: below, depth: depth + 1)
            } else {
                current = next
            }
        }
        return current
    }

    private static func makeParents(of path: String) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for name in path.split(separator: "/").dropLast() {
            prefix += "/" + name
            _ = mkdir(prefix, 0o777)  // under the daemons' umask 077: 0700, as before
        }
    }

    private static func workingFolder() -> String {
        guard let cwd = getcwd(nil, 0) else { return "." }
        defer { free(cwd) }
        return String(cString: cwd)
    }
}
