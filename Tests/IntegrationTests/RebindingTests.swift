import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// DNS rebinding: a name that resolves to an allowed address when checked and to another one afterwards
/// must still be delivered to the checked address, however the host is spelled (a trailing dot included).
/// workfcgi and deliveryd run in a private mount namespace whose /etc/resolv.conf points at a tiny DNS
/// server on loopback, which answers 127.0.0.2 (allowed) to the first two lookups of a name, then 127.0.0.3.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RebindingTests {
    static let unshare = ["/usr/bin/unshare", "/bin/unshare"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let canRun = getuid() == 0 && unshare != nil

    static let dnsServer = #"""
        import socket, struct, sys
        first, later, log = sys.argv[1], sys.argv[2], sys.argv[3]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.77", 53))
        s.settimeout(30)
        counts = {}
        while True:
            try:
                data, peer = s.recvfrom(512)
            except socket.timeout:
                break
            tid, = struct.unpack(">H", data[:2])
            i, labels = 12, []
            while data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode().lower()); i += 1 + data[i]
            qtype, = struct.unpack(">H", data[i + 1:i + 3])
            question, name = data[12:i + 5], ".".join(labels)
            ours, answer = name.endswith("rebind.test"), b""
            if ours and qtype == 1:
                n = counts.get(name, 0); counts[name] = n + 1
                ip = first if n < 2 else later
                answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
                with open(log, "a") as f: f.write(f"{name} {ip}\n")
            flags = 0x8180 if ours else 0x8183
            s.sendto(struct.pack(">HHHHHH", tid, flags, 1, 1 if answer else 0, 0, 0) + question + answer, peer)
        """#

    @Test(.enabled(if: canRun, "needs root and unshare")) func rebindingNeverReachesAnUncheckedAddress() async throws {
        let folder = NSTemporaryDirectory() + "rebind-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.dnsServer.write(toFile: folder + "/dns.py", atomically: true, encoding: .utf8)
        try "nameserver 127.0.0.77\noptions timeout:1 attempts:2\n".write(toFile: folder + "/resolv.conf", atomically: true, encoding: .utf8)
        let dns = Process()
        dns.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        dns.arguments = [folder + "/dns.py", "127.0.0.2", "127.0.0.3", folder + "/lookups.log"]
        // Not the test runner's pipes: a server left behind must not keep swift test waiting.
        dns.standardOutput = FileHandle.nullDevice
        dns.standardError = FileHandle.nullDevice
        try dns.run()
        defer { kill(dns.processIdentifier, SIGKILL) }

        let checked = try CallbackReceiver(host: "127.0.0.2")
        let port = try await checked.start()
        let rebound = try CallbackReceiver(host: "127.0.0.3", port: port)
        _ = try await rebound.start()
        defer { Task { await checked.stop(); await rebound.stop() } }

        let stack = try Stack(
            settings: ["WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "false", "WORKFCGI_CALLBACK_ALLOW_CIDRS": "127.0.0.2/32"],
            wrapper: [
                try #require(Self.unshare), "-m", "/bin/sh", "-c", #"mount --bind "$0" /etc/resolv.conf && exec "$@""#,
                folder + "/resolv.conf",
            ])
        try stack.start()
        var ids: [String] = []
        for url in ["http://evil.rebind.test.:\(port)/dot", "http://plain.rebind.test:\(port)/plain", "http://EVIL2.Rebind.Test.:\(port)/case"] {
            ids.append(try stack.submit(#"{"text": "rebind", "callback_url": "\#(url)"}"#))
        }
        for id in ids { try stack.waitForStatus(id, "completed") }
        let lookups = (try? String(contentsOfFile: folder + "/lookups.log", encoding: .utf8)) ?? ""
        #expect(checked.delivered.count == 3, "lookups:\n\(lookups)")
        #expect(rebound.calls.count == 0, "callbacks went to the rebound address: \(rebound.calls.map(\.path))\nlookups:\n\(lookups)")
    }
}
