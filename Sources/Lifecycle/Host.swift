import Config
import Foundation

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

    /// Creates the run folder if it is missing, 0710 with nginx's group: nginx can reach the sockets inside
    /// but cannot list or read anything there. An existing folder is left as its owner made it.
    public static func makeRunDirectory(_ path: String, group: gid_t?) throws {
        if FileManager.default.fileExists(atPath: path) { return }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o710)
        if let group { _ = chown(path, uid_t.max, group) }
    }

    /// Holds an exclusive lock on `path` for the rest of the process's life, or exits 1 naming the process
    /// that holds it: a second instance must never take over the first one's sockets or leases. The lock
    /// (flock) goes with the process, even on kill -9, so a stale file never blocks a restart.
    public static func holdInstanceLock(_ path: String, program: String) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            FileHandle.standardError.write(Data("\(program): cannot open lock file \(path): \(String(cString: strerror(errno)))\n".utf8))
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
