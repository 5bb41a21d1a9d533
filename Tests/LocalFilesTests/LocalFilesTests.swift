import Foundation
import LocalFiles
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LocalPathRulesTests {
    let rules = LocalPathRules(uid: 1000)

    @Test func filesTheDaemonWritesAreItsOwnRegularFilesWithOneName() {
        #expect(rules.ownFile(PathFacts(kind: .regular, owner: 1000, mode: 0o600)) == nil)
        #expect(rules.ownFile(PathFacts(kind: .regular, owner: 1000, mode: 0o644)) == nil, "the mode is then set on the descriptor")
        #expect(rules.ownFile(PathFacts(kind: .symlink, owner: 1000, mode: 0o777)) == .symlink)
        #expect(rules.ownFile(PathFacts(kind: .regular, owner: 1001, mode: 0o600)) == .ownedBy(1001))
        #expect(rules.ownFile(PathFacts(kind: .regular, owner: 0, mode: 0o600)) == .ownedBy(0), "not even root's: it is not ours to write")
        #expect(rules.ownFile(PathFacts(kind: .regular, owner: 1000, mode: 0o600, links: 2)) == .hardLinked(2))
        #expect(rules.ownFile(PathFacts(kind: .other, owner: 1000, mode: 0o600)) == .notRegularFile)
        #expect(rules.ownFile(PathFacts(kind: .directory, owner: 1000, mode: 0o700)) == .notRegularFile)
    }

    @Test func theSecretMayBeRootsOrOurs() {
        #expect(rules.trustedFile(PathFacts(kind: .regular, owner: 0, mode: 0o400)) == nil)
        #expect(rules.trustedFile(PathFacts(kind: .regular, owner: 1000, mode: 0o600)) == nil)
        #expect(rules.trustedFile(PathFacts(kind: .regular, owner: 65534, mode: 0o600)) == .ownedBy(65534))
        #expect(rules.trustedFile(PathFacts(kind: .symlink, owner: 1000, mode: 0o777)) == .symlink)
    }

    @Test func onlyOurOwnStaleSocketIsRemoved() {
        #expect(rules.staleSocket(PathFacts(kind: .socket, owner: 1000, mode: 0o660)) == nil)
        #expect(rules.staleSocket(PathFacts(kind: .socket, owner: 65534, mode: 0o777)) == .ownedBy(65534))
        #expect(rules.staleSocket(PathFacts(kind: .regular, owner: 1000, mode: 0o600)) == .notSocket)
        #expect(rules.staleSocket(PathFacts(kind: .symlink, owner: 1000, mode: 0o777)) == .symlink)
    }

    @Test func folders() {
        // The run folder of our own: its mode is set, whatever it was, unless others could already write it.
        #expect(rules.folder(PathFacts(kind: .directory, owner: 1000, mode: 0o755), enforcing: true) == .enforce)
        #expect(rules.folder(PathFacts(kind: .directory, owner: 1000, mode: 0o700), enforcing: true) == .enforce)
        #expect(rules.folder(PathFacts(kind: .directory, owner: 1000, mode: 0o755), enforcing: false) == .accept)
        #expect(rules.folder(PathFacts(kind: .directory, owner: 0, mode: 0o755), enforcing: true) == .accept)
        for mode: mode_t in [0o777, 0o775, 0o757, 0o1777, 0o1770] {
            #expect(rules.folder(PathFacts(kind: .directory, owner: 1000, mode: mode), enforcing: true) == .refuse(.writableByOthers(mode)))
            #expect(rules.folder(PathFacts(kind: .directory, owner: 0, mode: mode), enforcing: false) == .refuse(.writableByOthers(mode)))
        }
        #expect(rules.folder(PathFacts(kind: .directory, owner: 65534, mode: 0o700), enforcing: true) == .refuse(.ownedBy(65534)))
        #expect(rules.folder(PathFacts(kind: .symlink, owner: 1000, mode: 0o777), enforcing: true) == .refuse(.symlink))
        #expect(rules.folder(PathFacts(kind: .regular, owner: 1000, mode: 0o600), enforcing: false) == .refuse(.notFolder))
    }

    @Test func foldersAbove() {
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 0, mode: 0o755)) == nil)
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 0, mode: 0o1777)) == nil, "/tmp: others cannot rename what is ours")
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 1000, mode: 0o700)) == nil)
        #expect(rules.ancestor(PathFacts(kind: .symlink, owner: 0, mode: 0o777)) == nil, "followed and checked where it points")
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 0, mode: 0o777)) == .writableByOthers(0o777))
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 0, mode: 0o775)) == .writableByOthers(0o775))
        #expect(rules.ancestor(PathFacts(kind: .directory, owner: 1001, mode: 0o755)) == .ownedBy(1001))
        #expect(rules.ancestor(PathFacts(kind: .symlink, owner: 1001, mode: 0o777)) == .ownedBy(1001))
    }

    @Test func messagesNameThePathAndTheFix() {
        let writable = LocalPathError(path: "/srv/run", reason: .writableByOthers(0o777), uid: 0)
        #expect(writable.description.contains("/srv/run") && writable.description.contains("chmod 0710 /srv/run"))
        let owned = LocalPathError(path: "/srv/run", reason: .ownedBy(1000), uid: 0)
        #expect(owned.description.contains("chown 0 /srv/run"))
        let above = LocalPathError(path: "/home/a", reason: .ownedBy(1000), uid: 0, below: "/home/a/co/run")
        #expect(above.description.contains("/home/a, a folder above /home/a/co/run, is owned by uid 1000"))
        let link = LocalPathError(path: "/srv/run/api.sock.lock", reason: .symlink, uid: 0)
        #expect(link.description.contains("/srv/run/api.sock.lock is a symlink"))
    }
}

/// The I/O shell, on real files in a temporary folder.
@Suite(.serialized) struct LocalFileTests {
    static let isRoot = getuid() == 0
    let folder: String

    init() throws {
        folder = NSTemporaryDirectory() + "localfiles-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        chmod(folder, 0o700)
    }

    /// A file another user owns (65534 when we are root), 0644, with known contents, outside our folder.
    func victim() throws -> String {
        let path = folder + "-victim"
        try "victim's\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        if Self.isRoot { chown(path, 65534, 65534) }
        return path
    }

    func expectUntouched(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var info = stat()
        #expect(lstat(path, &info) == 0, sourceLocation: sourceLocation)
        #expect(info.st_mode & 0o7777 == 0o644, "mode \(String(info.st_mode & 0o7777, radix: 8))", sourceLocation: sourceLocation)
        if Self.isRoot { #expect(info.st_uid == 65534, sourceLocation: sourceLocation) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "victim's\n", sourceLocation: sourceLocation)
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: folder)
        try? FileManager.default.removeItem(atPath: folder + "-victim")
    }

    @Test func openOwnNeverFollowsASymlink() throws {
        defer { cleanUp() }
        let target = try victim()
        symlink(target, folder + "/x.lock")
        #expect(throws: LocalPathError(path: folder + "/x.lock", reason: .symlink, uid: geteuid())) { try LocalFile.openOwn(folder + "/x.lock") }
        try expectUntouched(target)

        // A fresh one is created 0600; an existing one of ours made 0600.
        let fd = try LocalFile.openOwn(folder + "/y.lock")
        close(fd)
        chmod(folder + "/y.lock", 0o644)
        close(try LocalFile.openOwn(folder + "/y.lock"))
        #expect(try FileManager.default.attributesOfItem(atPath: folder + "/y.lock")[.posixPermissions] as? Int == 0o600)
    }

    @Test(.enabled(if: isRoot, "needs root to chown")) func anotherUsersFileIsRefused() throws {
        defer { cleanUp() }
        let path = folder + "/x.db"
        try "victim's\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        chown(path, 65534, 65534)
        #expect(throws: LocalPathError(path: path, reason: .ownedBy(65534), uid: 0)) { try LocalFile.openOwn(path) }
        #expect(throws: LocalPathError(path: path, reason: .ownedBy(65534), uid: 0)) { try LocalFile.restrict(path, mode: 0o600) }
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o644)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "victim's\n")
    }

    @Test func restrictSetsTheModeThroughADescriptorAndNeverFollows() throws {
        defer { cleanUp() }
        let target = try victim()
        symlink(target, folder + "/x.db-wal")
        #expect(throws: LocalPathError(path: folder + "/x.db-wal", reason: .symlink, uid: geteuid())) {
            try LocalFile.restrict(folder + "/x.db-wal", mode: 0o600)
        }
        try expectUntouched(target)
        #expect(try LocalFile.restrict(folder + "/missing", mode: 0o600) == false)
        _ = FileManager.default.createFile(atPath: folder + "/x.db", contents: Data("db".utf8), attributes: [.posixPermissions: 0o644])
        #expect(try LocalFile.restrict(folder + "/x.db", mode: 0o600))
        #expect(try FileManager.default.attributesOfItem(atPath: folder + "/x.db")[.posixPermissions] as? Int == 0o600)
    }

    @Test func onlyAStaleSocketOfOursIsRemoved() throws {
        defer { cleanUp() }
        let target = try victim()
        symlink(target, folder + "/link.sock")
        #expect(throws: LocalPathError(path: folder + "/link.sock", reason: .symlink, uid: geteuid())) {
            try LocalFile.removeStaleSocket(folder + "/link.sock")
        }
        _ = FileManager.default.createFile(atPath: folder + "/file.sock", contents: Data("x".utf8))
        #expect(throws: LocalPathError(path: folder + "/file.sock", reason: .notSocket, uid: geteuid())) {
            try LocalFile.removeStaleSocket(folder + "/file.sock")
        }
        #expect(FileManager.default.fileExists(atPath: folder + "/file.sock"))
        try expectUntouched(target)

        // A real socket of ours: removed; a socket just bound: given its mode through an O_PATH descriptor.
        let path = folder + "/real.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        try LocalFile.openSocket(path, group: 33, mode: 0o660)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect(attributes[.posixPermissions] as? Int == 0o660)
        if Self.isRoot { #expect(attributes[.groupOwnerAccountID] as? Int == 33) }
        try LocalFile.removeStaleSocket(path)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func theRunFolderIsSetTo0710OrRefused() throws {
        defer { cleanUp() }
        let run = folder + "/run"
        // Missing: created, parents included.
        try LocalFolder.prepareRunFolder(folder + "/a/b/run", group: nil)
        #expect(try FileManager.default.attributesOfItem(atPath: folder + "/a/b/run")[.posixPermissions] as? Int == 0o710)
        // Exists 0755 (as a checkout's run/ does): 0710.
        mkdir(run, 0o755)
        chmod(run, 0o755)
        try LocalFolder.prepareRunFolder(run, group: nil)
        #expect(try FileManager.default.attributesOfItem(atPath: run)[.posixPermissions] as? Int == 0o710)
        // Writable by others: refused, left as it is.
        chmod(run, 0o777)
        #expect(throws: LocalPathError(path: run, reason: .writableByOthers(0o777), uid: geteuid())) {
            try LocalFolder.prepareRunFolder(run, group: nil)
        }
        #expect(try FileManager.default.attributesOfItem(atPath: run)[.posixPermissions] as? Int == 0o777)
        // A symlink to a folder: refused.
        chmod(run, 0o700)
        symlink(run, folder + "/link")
        #expect(throws: LocalPathError(path: folder + "/link", reason: .symlink, uid: geteuid())) {
            try LocalFolder.prepareRunFolder(folder + "/link", group: nil)
        }
        // Relative paths are checked against the working folder like absolute ones.
        #expect(LocalFolder.absolute("/x/./y/../z") == "/x/z")
    }

    @Test(.enabled(if: isRoot, "needs root to chown")) func aFolderAboveAnotherUserOwnsIsRefused() throws {
        defer { cleanUp() }
        mkdir(folder + "/theirs", 0o755)
        chmod(folder + "/theirs", 0o755)
        chown(folder + "/theirs", 65534, 65534)
        mkdir(folder + "/theirs/run", 0o700)
        #expect(throws: LocalPathError(path: folder + "/theirs", reason: .ownedBy(65534), uid: 0, below: folder + "/theirs/run")) {
            try LocalFolder.prepareRunFolder(folder + "/theirs/run", group: nil)
        }
        // Through a symlink of ours that points there: refused the same way.
        symlink(folder + "/theirs", folder + "/ours")
        #expect(throws: LocalPathError(path: folder + "/theirs", reason: .ownedBy(65534), uid: 0, below: folder + "/ours/run")) {
            try LocalFolder.check(folder + "/ours/run")
        }
        // A folder above that others may write (not sticky): refused.
        mkdir(folder + "/open", 0o777)
        chmod(folder + "/open", 0o777)
        mkdir(folder + "/open/run", 0o700)
        #expect(throws: LocalPathError(path: folder + "/open", reason: .writableByOthers(0o777), uid: 0, below: folder + "/open/run")) {
            try LocalFolder.check(folder + "/open/run")
        }
        // Sticky (like /tmp): fine.
        chmod(folder + "/open", 0o1777)
        try LocalFolder.check(folder + "/open/run")
    }
}
