import Foundation
import Testing

/// README.md's shell blocks (Quick start, the API examples, the backup) run as written, in one bash, in a
/// fresh folder holding the clone's nginx/ and a `.build/release` that is this build's binaries. The only
/// changes to the text: `swift build -c release` is dropped (the binaries are built), the ports 8080 and 9100
/// become free ones (other stacks may hold them), and the examples' request id becomes the job the /async
/// example created. Everything else, the receiver, job control, `nginx -p "$PWD"`, the backup, is the README's.
@Suite(.serialized) struct ReadmeTests {
    @Test func quickStartApiExamplesAndBackupRunAsWritten() throws {
        let readme = try String(contentsOf: Stack.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = ReadmeBlocks(readme)
        let quickStart = try blocks.shell(under: "## Quick start: one job, end to end, by hand")
        var lines = quickStart.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let stop = lines.popLast() else { throw Stack.Failure(description: "an empty Quick start") }
        #expect(stop.contains("-s quit") && stop.contains("kill"), "last Quick start line: \(stop)")
        #expect(lines.contains("swift build -c release"))
        lines.removeAll { $0 == "swift build -c release" }

        let id = "01a21618-39e2-7f09-91be-f5faf9af3c21"
        let requests = try blocks.shell(under: "### `GET /requests` and `GET /requests/{id}`")
            .replacingOccurrences(of: "<next_before from the previous page>", with: "'\"$ID\"'")
            .replacingOccurrences(of: id, with: "$ID")
        let redeliver = try blocks.shell(under: "### `POST /requests/{id}/redeliver` (operators)").replacingOccurrences(of: id, with: "$ID")
        let asyncExample = try blocks.shell(under: "### `POST /async`")
        let script = """
            umask 022
            exec 2>&1
            \(lines.joined(separator: "\n"))
            echo '=== sync'
            \(try blocks.shell(under: "### `POST /sync`"))
            echo; echo '=== async'
            \(asyncExample)
            echo; echo '=== async again'
            \(asyncExample)
            ID=$(sqlite3 run/workfcgi.db "SELECT id FROM requests WHERE mode = 'async' ORDER BY id DESC LIMIT 1")
            for _ in $(seq 100); do curl -s localhost:8080/requests/$ID | grep -q '"delivered_at":"' && break; sleep 0.1; done
            echo; echo "=== requests $ID"
            \(requests)
            echo; echo '=== redeliver'
            \(redeliver)
            echo; echo '=== status'
            \(try blocks.shell(under: "### `GET /status` (operators)"))
            echo; echo '=== backup'
            \(try blocks.shell(after: "**Backups**"))
            echo "backup exit $?"
            \(stop)
            wait %2 %3; echo "daemons exited $?"
            echo '=== done'
            """

        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("workfcgi-readme-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The receiver's port stays within the default WORKFCGI_CALLBACK_PORTS (8000-9999), as 9100 is.
        let port = try Stack.freePort(), receiverPort = try Self.freePort(in: 8000...9999)
        let nginx = directory.appendingPathComponent("nginx")
        try FileManager.default.createDirectory(at: nginx, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent(".build"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            at: directory.appendingPathComponent(".build/release"), withDestinationURL: Stack.binDirectory)
        for file in ["site.conf", "fastcgi_params", "operators.conf"] {
            let text = try String(contentsOf: Stack.packageRoot.appendingPathComponent("nginx/\(file)"), encoding: .utf8)
            try text.replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(port)")
                .write(to: nginx.appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
        let scriptPath = directory.appendingPathComponent("readme.sh").path
        try script.replacingOccurrences(of: "8080", with: "\(port)").replacingOccurrences(of: "9100", with: "\(receiverPort)")
            .write(toFile: scriptPath, atomically: true, encoding: .utf8)

        // bash and what it starts share its process group; nginx daemonizes, so it is stopped by its pid file.
        let log = directory.appendingPathComponent("readme.log").path
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": directory.path]
        let pid = try Stack.spawn("/bin/bash", [scriptPath], environment: environment, directory: directory.path, log: log)
        let status = Stack.reap(pid, timeout: 120)
        kill(-pid, SIGKILL)
        if let nginxPID = try? String(contentsOfFile: directory.path + "/run/nginx.pid", encoding: .utf8),
            let n = pid_t(nginxPID.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(n, SIGKILL)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "the script ran to its end within 120 s:\n\(output)")

        let part = ReadmeOutput(output)
        #expect(part["=== sync"].contains(#""hash":"f6ff07025a2c5702133ffdad8684ed8a00f62d716792347fa17c1acd6d00d96d""#), "\(output)")
        #expect(part["=== async"].contains("HTTP/1.1 202 Accepted") && part["=== async"].contains("Location: /requests/"), "\(output)")
        #expect(part["=== async again"].contains("HTTP/1.1 202 Accepted"), "\(output)")
        #expect(part["=== async again"].lowercased().contains("idempotent-replayed: true"), "\(output)")
        #expect(part["=== requests"].contains(#""requests":["#) && part["=== requests"].contains(#""status":"delivered""#), "\(output)")
        #expect(!part["=== requests"].contains(#""error":{"#), "\(output)")
        #expect(part["=== redeliver"].contains(#""status""#) && !part["=== redeliver"].contains(#""error":{"#), "\(output)")
        #expect(part["=== status"].contains(#""pools":["#) && part["=== status"].contains(#""jobs_in_hand":"#), "\(output)")
        #expect(part["=== backup"].contains("backup exit 0"), "\(output)")
        #expect(output.contains("daemons exited 0"), "workfcgi and deliveryd drain and exit 0:\n\(output)")
        // The receiver printed both jobs' callbacks (the Quick start's text job and the API's report job).
        let callbacks = output.split(separator: "\n").filter { $0.hasPrefix("callback ") }
        #expect(callbacks.contains { $0.contains(#""op":"text""#) && $0.contains(#""status":"completed""#) }, "\(output)")
        #expect(callbacks.contains { $0.contains(#""op":"report""#) && $0.contains(#""status":"completed""#) }, "\(output)")

        let backups = (try? FileManager.default.contentsOfDirectory(atPath: directory.path + "/backups")) ?? []
        #expect(backups.contains("webhook-secret") && backups.contains { $0.hasPrefix("workfcgi-") && $0.hasSuffix(".db") }, "\(backups)")
        for file in backups {
            let mode = try FileManager.default.attributesOfItem(atPath: directory.path + "/backups/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file) is owner-only")
        }
    }
}

extension ReadmeTests {
    /// A port of `range` nobody listens on now (random order: parallel runs rarely collide).
    static func freePort(in range: ClosedRange<Int>) throws -> Int {
        for port in range.shuffled() {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
        throw Stack.Failure(description: "no free port in \(range)")
    }
}

/// The fenced blocks of a Markdown text, found by the heading (or line) they follow.
struct ReadmeBlocks {
    let lines: [Substring]
    init(_ text: String) { lines = text.split(separator: "\n", omittingEmptySubsequences: false) }

    /// Every ```sh block under `heading`, up to the next heading of the same or a higher level, joined.
    func shell(under heading: String) throws -> String {
        guard let start = lines.firstIndex(where: { $0 == heading }) else { throw Stack.Failure(description: "README has no '\(heading)'") }
        let level = heading.prefix { $0 == "#" }.count
        var fenced = false  // a shell comment in a block is no heading
        let end = lines[(start + 1)...].firstIndex { line in
            if line.hasPrefix("```") { fenced.toggle() }
            let hashes = line.prefix { $0 == "#" }.count
            return !fenced && hashes > 0 && hashes <= level && line.dropFirst(hashes).first == " "
        } ?? lines.endIndex
        let found = blocks(in: (start + 1)..<end)
        guard !found.isEmpty else { throw Stack.Failure(description: "no ```sh block under '\(heading)'") }
        return found.joined(separator: "\n")
    }

    /// The first ```sh block after the first line that begins with `marker`.
    func shell(after marker: String) throws -> String {
        guard let start = lines.firstIndex(where: { $0.hasPrefix(marker) }), let first = blocks(in: (start + 1)..<lines.endIndex).first else {
            throw Stack.Failure(description: "no ```sh block after '\(marker)'")
        }
        return first
    }

    private func blocks(in range: Range<Int>) -> [String] {
        var found: [String] = []
        var current: [Substring]?
        for line in lines[range] {
            if current == nil, line == "```sh" {
                current = []
            } else if current != nil, line == "```" {
                found.append(current!.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return found
    }
}

/// The script's output cut at its `=== name` markers: `part["=== sync"]` is what followed that marker.
struct ReadmeOutput {
    let text: String
    init(_ text: String) { self.text = text }
    subscript(marker: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0 == marker || $0.hasPrefix(marker + " ") }) else { return "" }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("=== ") } ?? lines.endIndex
        return lines[(start + 1)..<end].joined(separator: "\n")
    }
}
