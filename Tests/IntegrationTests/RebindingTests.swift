import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// DNS rebinding: a name that resolves to an allowed address when checked and to another one afterwards
/// must still be delivered to the checked address, however the host is spelled (a trailing dot included).
/// workfcgi and deliveryd run in a private mount namespace whose /etc/resolv.conf points at a tiny DNS
/// server on loopback, which answers 127.0.0.2 (allowed) to the first lookup of a name, then 127.0.0.3.
/// workfcgi looks nothing up (it accepts a name as it is); the first lookup is deliveryd's, before its attempt.
/// Names under `same.test` always answer 127.0.0.2.
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
            ours, answer = name.endswith("rebind.test") or name.endswith("same.test"), b""
            if ours and qtype == 1:
                n = counts.get(name, 0); counts[name] = n + 1
                ip = first if n < 1 or name.endswith("same.test") else later
                answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
                with open(log, "a") as f: f.write(f"{name} {ip}\n")
            flags = 0x8180 if ours else 0x8183
            s.sendto(struct.pack(">HHHHHH", tid, flags, 1, 1 if answer else 0, 0, 0) + question + answer, peer)
        """#

    /// Starts the DNS server in a fresh folder; returns the folder and the server.
    static func startDNS() throws -> (String, Process) {
        let folder = NSTemporaryDirectory() + "rebind-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Self.dnsServer.write(toFile: folder + "/dns.py", atomically: true, encoding: .utf8)
        try "nameserver 127.0.0.77\noptions timeout:1 attempts:2\n".write(toFile: folder + "/resolv.conf", atomically: true, encoding: .utf8)
        let dns = Process()
        dns.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        dns.arguments = [folder + "/dns.py", "127.0.0.2", "127.0.0.3", folder + "/lookups.log"]
        // Not the test runner's pipes: a server left behind must not keep swift test waiting.
        dns.standardOutput = FileHandle.nullDevice
        dns.standardError = FileHandle.nullDevice
        try dns.run()
        return (folder, dns)
    }

    static func wrapper(_ folder: String) throws -> [String] {
        [try #require(Self.unshare), "-m", "/bin/sh", "-c", #"mount --bind "$0" /etc/resolv.conf && exec "$@""#, folder + "/resolv.conf"]
    }

    @Test(.enabled(if: canRun, "needs root and unshare")) func rebindingNeverReachesAnUncheckedAddress() async throws {
        let (folder, dns) = try Self.startDNS()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        defer { kill(dns.processIdentifier, SIGKILL) }

        let checked = try CallbackReceiver(host: "127.0.0.2")
        let port = try await checked.start()
        let rebound = try CallbackReceiver(host: "127.0.0.3", port: port)
        _ = try await rebound.start()
        defer { checked.stopNow(); rebound.stopNow() }

        let stack = try Stack(
            settings: ["WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "false", "WORKFCGI_CALLBACK_ALLOW_CIDRS": "127.0.0.2/32"],
            wrapper: try Self.wrapper(folder))
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

    /// The per-host limit and the circuit breaker belong to the address connected to: four names for one
    /// failing receiver open one circuit, for 127.0.0.2 and its port, as if they were one host (they are).
    @Test(.enabled(if: canRun, "needs root and unshare")) func manyNamesForOneAddressShareItsCircuit() async throws {
        let (folder, dns) = try Self.startDNS()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        defer { kill(dns.processIdentifier, SIGKILL) }
        let receiver = try CallbackReceiver(host: "127.0.0.2")
        let port = try await receiver.start()
        defer { receiver.stopNow() }
        let stack = try Stack(
            settings: [
                "WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "false", "WORKFCGI_CALLBACK_ALLOW_CIDRS": "127.0.0.2/32",
                "WORKFCGI_RETRY_SCHEDULE": "none", "WORKFCGI_BREAKER_THRESHOLD": "3", "WORKFCGI_BREAKER_COOLDOWN": "60s",
            ],
            wrapper: try Self.wrapper(folder))
        try stack.start()
        // One at a time, so each is one failure of its own name (one attempt each: no retries).
        for name in ["one", "two", "three"] {
            let id = try stack.submit(#"{"text": "x", "callback_url": "http://\#(name).same.test:\#(port)/status/500"}"#)
            try stack.waitForStatus(id, "failed")
        }
        let client = HTTPClient()
        try stack.waitFor("one open circuit for the address in /healthz", timeout: 5) {
            let circuits = ((try? client.get(stack.baseURL + "/healthz"))?.json?["deliveryd"] as? [String: Any])?["circuits"] as? [[String: Any]]
            return circuits?.contains { $0["host"] as? String == "127.0.0.2:\(port)" && $0["state"] as? String == "open" } == true
        }
        // A fourth name for the same address is held back by that circuit: postponed, not sent.
        let fourth = try stack.submit(#"{"text": "x", "callback_url": "http://four.same.test:\#(port)/status/500"}"#)
        try await Task.sleep(for: .seconds(1.5))
        #expect(try stack.attemptStatuses(fourth).isEmpty, "the open circuit of its address held it back")
        #expect(receiver.calls.count == 3)
    }
}
