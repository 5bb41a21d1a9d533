import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A run's own working folder (mode 0700, under the daemon's temporary folder), and its removal, which
/// never follows a symlink the program left there: only what is inside the folder goes.
enum WorkingFolder {
    static func create() -> String? {
        let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
        var template = Array((base + "workfcgi-handler-XXXXXX").utf8CString)
        return template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) }
    }

    static func remove(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 { empty(fd, depth: 0) }
        rmdir(path)
    }

    /// Removes everything in the folder `fd` (closed here). Depth-bounded: a program can nest folders deeper
    /// than any stack, and what is left past the bound stays (logged by nobody; it is under the temp folder).
    private static func empty(_ fd: Int32, depth: Int) {
        guard depth < 64, let dir = fdopendir(fd) else {
            close(fd)
            return
        }
        defer { closedir(dir) }
        // Names as raw bytes: a String would repair a name that is not UTF-8 (`a\xffb`), and unlinkat of the
        // repaired name fails, leaving the folder behind at every run.
        var names: [[CChar]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.bindMemory(to: CChar.self).prefix { $0 != 0 }) + [0]
            }
            if name != [46, 0] && name != [46, 46, 0] { names.append(name) }
        }
        for name in names where unlinkat(fd, name, 0) != 0 {
            guard errno == EISDIR else { continue }
            // A folder the program closed to itself is opened again first (the same user may), never through a
            // symlink: a name swapped for a link after the unlinkat cannot make this chmod another folder
            // (AT_SYMLINK_NOFOLLOW: glibc ≥ 2.32 refuses a link instead of following it).
            var child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child < 0 && fchmodat(fd, name, 0o700, AT_SYMLINK_NOFOLLOW) == 0 {
                child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if child >= 0 { empty(child, depth: depth + 1) }
            unlinkat(fd, name, AT_REMOVEDIR)
        }
    }
}
