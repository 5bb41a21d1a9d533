import Config
import Foundation
import LocalFiles

/// What a daemon asks of the machine before it serves: its run folder, the nginx identity its sockets are
/// opened to, and the one-instance lock.
public enum Host {
    /// The front end's users that exist: their uids (FastCGI peers to accept) and the first one's group (the
    /// sockets'), and the names that do not exist.
    public static func frontendIdentity(_ settings: Settings) -> (uids: [uid_t], group: gid_t?, missing: [String]) {
        var uids: [uid_t] = [], group: gid_t?, missing: [String] = []
        for user in settings.frontendUsers {
            guard let entry = getpwnam(user) else {
                missing.append(user)
                continue
            }
            uids.append(entry.pointee.pw_uid)
            if group == nil { group = entry.pointee.pw_gid }
        }
        return (uids, group, missing)
    }

    /// Checks the folders the daemon keeps things in before it creates anything there: the run folder
    /// (created when missing, and when it is the daemon's own set to 0710 with the front end's `group`, so
    /// the front end can reach the sockets but nobody else can list or read anything there, logs included)
    /// and the folders of the database, the sockets and the secret file. Throws, naming the path and the fix,
    /// when one is a symlink, another user's, or writable by others, or lies below such a folder.
    public static func prepareFolders(_ settings: Settings, group: gid_t?) throws {
        if let service = InstalledService.linked(from: settings) { throw service }
        try LocalFolder.prepareRunFolder(settings.runDirectory, group: group)
        var checked: Set<String> = [LocalFolder.absolute(settings.runDirectory)]
        var files = [settings.databasePath, settings.doorbellSocket]
        for case .unix(let path) in [settings.syncListen, settings.apiListen] { files.append(path) }
        // The secret file is used only when no secret is set.
        if settings.webhookSecret == nil { files.append(settings.webhookSecretFile) }
        for file in files {
            let folder = LocalFolder.absolute(file + "/..")
            if checked.insert(folder).inserted { try LocalFolder.check(folder) }
        }
    }

    /// The instance lock's file: beside the api socket, or, when it listens on TCP, in the run folder named by
    /// its address (two nodes on one machine need two run folders or two ports).
    public static func instanceLockPath(_ settings: Settings) -> String {
        switch settings.apiListen {
        case .unix(let path): path + ".lock"
        case .tcp: settings.runDirectory + "/workfcgi-" + settings.apiListen.description.filter { !"[]".contains($0) } + ".lock"
        }
    }

    /// Holds an exclusive lock on `path` for the rest of the process's life, or exits 1 naming the process
    /// that holds it: a second instance must never take over the first one's sockets or leases. The lock
    /// (flock) goes with the process, even on kill -9, so a stale file never blocks a restart. A symlink or
    /// another user's file there is refused (exit 1), never followed, truncated or written.
    public static func holdInstanceLock(_ path: String, program: String) {
        let fd: Int32
        do {
            fd = try LocalFile.openOwn(path)
        } catch {
            FileHandle.standardError.write(Data("\(program): cannot use lock file: \(error)\n".utf8))
            exit(1)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = max(0, pread(fd, &buffer, buffer.count, 0))
            let pid = String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            FileHandle.standardError.write(Data("\(program): already running, pid \(pid.isEmpty ? "?" : pid) (lock \(path))\n".utf8))
            exit(1)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        // Deliberately never closed: closing the descriptor would release the lock.
    }
}

/// A run folder whose api socket is a symlink is the one scripts/install-systemd linked to an installed
/// service's sockets (`run/api.sock → /run/NAME/api.sock`): that service runs its own deliveryd and workfcgi
/// on its own database (`/var/lib/NAME`). A daemon started by hand from such a checkout would serve or deliver
/// from `run/workfcgi.db`, a different database, so it refuses and says where the service's things are.
public struct InstalledService: Error, CustomStringConvertible {
    public var link: String
    public var target: String
    /// The instance's name, from the link's target (`workfcgi` for `/run/workfcgi/api.sock`).
    public var name: String

    /// The service the run folder's api socket links to: a symlink to `/run/NAME/api.sock`, as
    /// scripts/install-systemd makes it. nil otherwise; any other symlink there is refused later as a symlink.
    public static func linked(from settings: Settings) -> InstalledService? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(settings.apiSocket, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = target.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].isEmpty, parts[1] == "run", parts[3] == "api.sock", isServiceName(parts[2]) else { return nil }
        return InstalledService(link: settings.apiSocket, target: target, name: String(parts[2]))
    }

    /// install-systemd's --name grammar (lower-case letters, digits, dashes). The name is echoed into advice
    /// to run as root (`systemctl status NAME`, `cat /var/lib/NAME/…`), so a link planted with any other text
    /// (`/run/x;curl …|sh;/api.sock`) is not a service: it is refused later as a symlink.
    static func isServiceName(_ name: Substring) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.first != UInt8(ascii: "-")
            && name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    public var deliverydUnit: String { name == "workfcgi" ? "deliveryd" : "\(name)-deliveryd" }

    /// The instance lock the service's `program` holds while it runs, where scripts/install-systemd's settings
    /// put it (its database in /var/lib/NAME, its sockets in /run/NAME).
    public func lockFile(_ program: String) -> String {
        program == "deliveryd" ? "/var/lib/\(name)/workfcgi.db-deliveryd.lock" : "/run/\(name)/api.sock.lock"
    }

    /// The pid of the service's `program` when it runs: the process /proc/locks shows holding its instance
    /// lock (read, not taken: taking it even for a moment could make a starting service fail its own).
    /// nil when it does not run, or when the lock file cannot be looked at (not root: /var/lib/NAME is 0700).
    public func runningPID(_ program: String) -> Int32? {
        var info = stat()
        guard lstat(lockFile(program), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
            let table = try? String(contentsOfFile: "/proc/locks", encoding: .utf8)
        else { return nil }
        return Self.flockHolder(inode: UInt64(info.st_ino), device: UInt64(info.st_dev), locks: table)
    }

    /// The pid holding an exclusive flock on the file (device, inode) in /proc/locks' text, whose lines read
    /// `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF` (major and minor in hex, the inode in decimal).
    public static func flockHolder(inode: UInt64, device: UInt64, locks: String) -> Int32? {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        // glibc's major() and minor(): the minor's high bits sit at 20...43, the major's from 44 up.
        let minor = (device & 0xff) | ((device >> 12) & 0xffff_ff00)
        for line in locks.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // "->" marks a process waiting for the lock, not holding it.
            guard fields.count >= 6, fields[1] == "FLOCK", fields[3] == "WRITE" else { continue }
            let file = fields[5].split(separator: ":")
            guard file.count == 3, UInt64(file[0], radix: 16) == major, UInt64(file[1], radix: 16) == minor, UInt64(file[2]) == inode
            else { continue }
            return Int32(fields[4])
        }
        return nil
    }

    /// Said instead of the refusal when the service's own `program` already runs: nothing to start here.
    public func alreadyRunning(_ program: String, pid: Int32) -> String {
        let unit = program == "deliveryd" ? deliverydUnit : name
        return "\(program) already runs as the installed service \(unit).service (pid \(pid), database in /var/lib/\(name)); this "
            + "checkout's run/ links to it (\(link) -> \(target)), so there is nothing to start here. Its settings: "
            + "/etc/workfcgi/workfcgi.env, then systemctl restart \(name) \(deliverydUnit)"
    }
    public var secretFile: String { "/var/lib/\(name)/webhook-secret" }

    public var description: String {
        """
        \(link) links to \(target): this run folder is the installed service's (scripts/install-systemd), which \
        runs its own workfcgi and deliveryd (systemctl start \(name) starts both; systemctl status \(name) \(deliverydUnit)) \
        on its own database in /var/lib/\(name); one started here would use another database. Use the service (its settings: \
        /etc/workfcgi/workfcgi.env, then systemctl restart \(name) \(deliverydUnit)), or run by hand from another \
        folder (WORKFCGI_RUN_DIR=/tmp/mine, with nginx pointed there)
        """
    }
}
