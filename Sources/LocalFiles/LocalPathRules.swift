#if canImport(Glibc)
import Glibc
#endif

/// What lstat (or fstat) says about one path: the part the rules look at.
public struct PathFacts: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case regular, directory, symlink, socket, other }
    public var kind: Kind
    public var owner: uid_t
    /// Permission bits with setuid, setgid and sticky.
    public var mode: mode_t
    public var links: Int

    public init(kind: Kind, owner: uid_t, mode: mode_t, links: Int = 1) {
        self.kind = kind
        self.owner = owner
        self.mode = mode
        self.links = links
    }

    public init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        case S_IFSOCK: kind = .socket
        default: kind = .other
        }
        owner = info.st_uid
        mode = info.st_mode & 0o7777
        links = Int(info.st_nlink)
    }
}

/// Why a daemon will not use a path. Its description names the path and the fix.
public struct LocalPathError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case symlink
        case notRegularFile
        case notFolder
        case notSocket
        case ownedBy(uid_t)
        case hardLinked(Int)
        /// Group or others may write it (the mode).
        case writableByOthers(mode_t)
        /// A system call failed (its name and errno).
        case system(String, Int32)
    }

    public var path: String
    public var reason: Reason
    /// The daemon's own uid, for the fix.
    public var uid: uid_t
    /// When `path` is a folder above the one being checked: that one.
    public var below: String?

    public init(path: String, reason: Reason, uid: uid_t, below: String? = nil) {
        self.path = path
        self.reason = reason
        self.uid = uid
        self.below = below
    }

    public var description: String {
        let octal = { (mode: mode_t) in "0" + String(mode, radix: 8) }
        if let below {
            // Whoever owns or may write a folder above can rename the folders below it and put their own there.
            let what: String?
            switch reason {
            case .ownedBy(let owner): what = "is owned by uid \(owner)"
            case .writableByOthers(let mode): what = "can be written by other users (mode \(octal(mode)))"
            default: what = nil
            }
            if let what {
                return "\(path), a folder above \(below), \(what): the daemons keep their files only under folders that "
                    + "nobody but root and uid \(uid) can change; fix \(path) (chown root, chmod go-w) or move \(below) "
                    + "(e.g. WORKFCGI_RUN_DIR=/run/workfcgi)"
            }
        }
        switch reason {
        case .symlink:
            return "\(path) is a symlink: the daemons never follow one there; remove it (for a folder setting, name the real folder)"
        case .notRegularFile: return "\(path) is not a regular file: remove it"
        case .notFolder: return "\(path) is not a folder"
        case .notSocket: return "\(path) is in the way of a socket and is not one: remove it"
        case .ownedBy(let owner):
            return "\(path) is owned by uid \(owner), not by uid \(uid) that the daemons run as: chown \(uid) \(path) "
                + "if it is this service's (or run the daemons as uid \(owner)), else remove it"
        case .hardLinked(let links): return "\(path) has \(links) hard links: remove it, the daemons create their own"
        case .writableByOthers(let mode):
            if mode & mode_t(S_ISVTX) != 0 {
                return "\(path) can be written by other users (mode \(octal(mode))): give the daemons a folder of their own"
            }
            return "\(path) can be written by other users (mode \(octal(mode))): chmod 0710 \(path), after checking that "
                + "nothing in it was put there by someone else"
        case .system(let call, let code):
            return "\(call) \(path): \(String(cString: strerror(code)))"
        }
    }
}

/// Which paths a daemon running as `uid` may create, write or trust. Pure: the callers stat, these decide.
/// Root's own things are trusted too: root can change anything anyway.
public struct LocalPathRules: Sendable {
    public var uid: uid_t

    public init(uid: uid_t) { self.uid = uid }

    func trusts(_ owner: uid_t) -> Bool { owner == 0 || owner == uid }

    /// A file the daemon writes (lock files, the database and its -wal and -shm): its own regular file, with
    /// no second name another user could have given it.
    public func ownFile(_ facts: PathFacts) -> LocalPathError.Reason? {
        if facts.kind == .symlink { return .symlink }
        if facts.kind != .regular { return .notRegularFile }
        if facts.owner != uid { return .ownedBy(facts.owner) }
        if facts.links > 1 { return .hardLinked(facts.links) }
        return nil
    }

    /// A file the daemon only reads and must be able to believe (the webhook secret): root's or its own.
    public func trustedFile(_ facts: PathFacts) -> LocalPathError.Reason? {
        if facts.kind == .symlink { return .symlink }
        if facts.kind != .regular { return .notRegularFile }
        if !trusts(facts.owner) { return .ownedBy(facts.owner) }
        return nil
    }

    /// A program the daemon runs (a handler): root's or its own regular file that nobody else may write, or
    /// they could change what runs as the service.
    public func trustedProgram(_ facts: PathFacts) -> LocalPathError.Reason? {
        if let reason = trustedFile(facts) { return reason }
        if facts.mode & 0o022 != 0 { return .writableByOthers(facts.mode) }
        return nil
    }

    /// Something found where the daemon binds a socket: only its own socket (left by a predecessor) may go.
    public func staleSocket(_ facts: PathFacts) -> LocalPathError.Reason? {
        if facts.kind == .symlink { return .symlink }
        if facts.kind != .socket { return .notSocket }
        if facts.owner != uid { return .ownedBy(facts.owner) }
        return nil
    }

    public enum FolderVerdict: Sendable, Equatable {
        case accept
        /// The daemon's own folder, closed to others: give it the run folder's mode and group.
        case enforce
        case refuse(LocalPathError.Reason)
    }

    /// A folder the daemons create things in. Nobody but root and the daemon may be able to write it: they
    /// could put symlinks or files of their own where the daemons create theirs. The sticky bit does not
    /// help here (others could still create the names first). `enforcing`: the run folder, whose mode the
    /// daemon sets when the folder is its own.
    public func folder(_ facts: PathFacts, enforcing: Bool) -> FolderVerdict {
        if facts.kind == .symlink { return .refuse(.symlink) }
        if facts.kind != .directory { return .refuse(.notFolder) }
        if !trusts(facts.owner) { return .refuse(.ownedBy(facts.owner)) }
        if facts.mode & 0o022 != 0 { return .refuse(.writableByOthers(facts.mode)) }
        return enforcing && facts.owner == uid ? .enforce : .accept
    }

    /// A folder on the way to one of those (symlinks are followed and checked where they point): whoever
    /// may change it could swap the folders below. A sticky folder others may write (/tmp) is fine: they
    /// cannot rename or remove what is not theirs.
    public func ancestor(_ facts: PathFacts) -> LocalPathError.Reason? {
        if facts.kind != .directory && facts.kind != .symlink { return .notFolder }
        if !trusts(facts.owner) { return .ownedBy(facts.owner) }
        if facts.kind == .directory && facts.mode & 0o022 != 0 && facts.mode & mode_t(S_ISVTX) == 0 {
            return .writableByOthers(facts.mode)
        }
        return nil
    }
}
