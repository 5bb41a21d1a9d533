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
        guard parts.count == 4, parts[0].isEmpty, parts[1] == "run", !parts[2].isEmpty, parts[3] == "api.sock" else { return nil }
        return InstalledService(link: settings.apiSocket, target: target, name: String(parts[2]))
    }

    public var deliverydUnit: String { name == "workfcgi" ? "deliveryd" : "\(name)-deliveryd" }
    public var secretFile: String { "/var/lib/\(name)/webhook-secret" }

    public var description: String {
        """
        \(link) links to \(target): this run folder is the installed service's (scripts/install-systemd), which \
        runs its own workfcgi and deliveryd (systemctl status \(name) \(deliverydUnit)) on its own database in \
        /var/lib/\(name); one started here would use another database. Use the service (its settings: \
        /etc/workfcgi/workfcgi.env, then systemctl restart \(name) \(deliverydUnit)), or run by hand from another \
        folder (WORKFCGI_RUN_DIR=/tmp/mine, with nginx pointed there)
        """
    }
}
