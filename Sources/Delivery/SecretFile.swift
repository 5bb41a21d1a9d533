import Config
import Foundation
import LocalFiles

#if canImport(Glibc)
import Glibc
#endif

/// Where deliveryd's webhook secret comes from, first match wins: `WORKFCGI_WEBHOOK_SECRET`; a systemd
/// credential named `webhook-secret` (`LoadCredential=`, readable by this service only); the secret file
/// (0600, this user's or root's, never read through a symlink; refused if any other user could read it);
/// a secret older versions kept in the database (moved to the file, then deleted there); else a new one,
/// written to the file.
public enum SecretFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public enum Source: Sendable, Equatable { case environment, credential, file, migrated, generated }

    public static func load(
        settings: Settings, environment: [String: String] = ProcessInfo.processInfo.environment,
        legacy: () throws -> String?
    ) throws -> (secret: String, source: Source) {
        if let secret = settings.webhookSecret { return (secret, .environment) }
        if let folder = environment["CREDENTIALS_DIRECTORY"], let secret = try read(folder + "/webhook-secret") {
            return (secret, .credential)
        }
        if let secret = try read(settings.webhookSecretFile) { return (secret, .file) }
        if let old = try legacy() {
            try write(old, to: settings.webhookSecretFile)
            return (old, .migrated)
        }
        let secret = WebhookSigner.generateSecret()
        try write(secret, to: settings.webhookSecretFile)
        return (secret, .generated)
    }

    /// The secret `load` would sign with, without creating, moving or writing anything: nil when none is set
    /// and the secret file does not exist yet (deliveryd generates it at its first start).
    public static func peek(
        settings: Settings, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> (secret: String, source: Source)? {
        if let secret = settings.webhookSecret { return (secret, .environment) }
        if let folder = environment["CREDENTIALS_DIRECTORY"], let secret = try read(folder + "/webhook-secret") {
            return (secret, .credential)
        }
        return try read(settings.webhookSecretFile).map { ($0, .file) }
    }

    /// The trimmed contents, nil when there is no such file.
    static func read(_ path: String) throws -> String? {
        // O_NONBLOCK: a FIFO planted there must not hang the start; it is refused below.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            if errno == ELOOP { throw Failure(description: "\(LocalPathError(path: path, reason: .symlink, uid: geteuid()))") }
            throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        // Root's or this user's only: a secret another user planted would let them forge every callback.
        if let reason = LocalPathRules(uid: geteuid()).trustedFile(PathFacts(info)) {
            throw Failure(description: "\(LocalPathError(path: path, reason: reason, uid: geteuid()))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw Failure(description: "\(path) can be read by other users; chmod 600 it (and rotate the secret if it leaked)")
        }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &bytes, bytes.count)
        guard n >= 0 else { throw Failure(description: "cannot read \(path)") }
        let text = String(decoding: bytes[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return nil }
        // Its contents are never printed: --show-secret shows only a secret, and an error names the file.
        guard WebhookSecretText.key(text) != nil else {
            throw Failure(description: "\(path) does not hold a webhook secret (\(WebhookSecretText.rule)); remove it to have one generated, or write one there")
        }
        return text
    }

    /// Creates the file 0600; never follows a symlink or overwrites an existing file.
    static func write(_ secret: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((secret + "\n").utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
