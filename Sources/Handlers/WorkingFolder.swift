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
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        for name in names where unlinkat(fd, name, 0) != 0 {
            guard errno == EISDIR else { continue }
            // A folder the program closed to itself is opened again first (the same user may).
            _ = fchmodat(fd, name, 0o700, 0)
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child >= 0 { empty(child, depth: depth + 1) }
            unlinkat(fd, name, AT_REMOVEDIR)
        }
    }
}
