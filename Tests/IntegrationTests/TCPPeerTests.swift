import Foundation
import Harness
import Testing

/// Who may talk FastCGI over TCP beyond the address check: a peer on this machine must be a front-end user,
/// as on a unix socket (the kernel's sock_diag tells who owns its socket), and no peer may hold a pool thread
/// by sending its request slowly (WORKFCGI_FASTCGI_READ_TIMEOUT).
@Suite(.serialized, .timeLimit(.minutes(2))) struct TCPPeerTests {
    /// A FastCGI client in python, so that it can run as another user: `TARGET MODE`, TARGET `host:port` or a
    /// unix socket path; MODE `whole` (the request at once), `drip` (a byte every 0.3 s) or `dripbody` (params
    /// at once, then a POST body a byte every 0.3 s). Prints `answered`, `closed` or `reset`, then the seconds
    /// taken, then the status line. Stops by itself within 60 s.
    static let client = #"""
        import socket, struct, sys, time
        def rec(t, content):
            return struct.pack('!BBHHBx', 1, t, 1, len(content), 0) + content
        def nv(n, v):
            n, v = n.encode(), v.encode()
            def l(x): return bytes([len(x)]) if len(x) < 128 else struct.pack('!I', len(x) | 0x80000000)
            return l(n) + l(v) + n + v
        target, mode = sys.argv[1], sys.argv[2]
        body = b'{"text": "dripped", "callback_url": "http://127.0.0.1:9/x"}' if mode == 'dripbody' else b''
        params = dict(REQUEST_METHOD='POST' if body else 'GET', SCRIPT_NAME='/async' if body else '/healthz', REMOTE_ADDR='127.0.0.1',
                      SERVER_PROTOCOL='HTTP/1.1', CONTENT_TYPE='application/json', CONTENT_LENGTH=str(len(body)))
        head = rec(1, struct.pack('!HB5x', 1, 0)) + rec(4, b''.join(nv(k, v) for k, v in params.items())) + rec(4, b'')
        tail = (rec(5, body) if body else b'') + rec(5, b'')
        if target.startswith('/'):
            s = socket.socket(socket.AF_UNIX); s.connect(target)
        else:
            host, port = target.rsplit(':', 1); s = socket.create_connection((host.strip('[]'), int(port)))
        s.settimeout(30)
        start = time.monotonic()
        def drip(data):
            for i in range(len(data)):
                if time.monotonic() - start > 60: break
                s.sendall(data[i:i + 1]); time.sleep(0.3)
        try:
            if mode == 'whole': s.sendall(head + tail)
            elif mode == 'drip': drip(head + tail)
            else: s.sendall(head); drip(tail)
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            print('reset', round(time.monotonic() - start, 1)); sys.exit(0)
        status = data[8:].split(b'\r\n')[0].decode(errors='replace')
        print('answered' if data else 'closed', round(time.monotonic() - start, 1), status)
        """#

    /// Runs the client as root, or as uid 65534 with no groups (a local user who is no front end).
    static func talk(_ target: String, _ mode: String = "whole", asNobody: Bool = false) throws -> (outcome: String, seconds: Double, output: String) {
        let python = ["/usr/bin/python3", "-c", client, target, mode]
        let result =
            asNobody
            ? try Stack.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + python)
            : try Stack.run(python[0], Array(python.dropFirst()))
        let words = result.output.split(whereSeparator: \.isWhitespace)
        return (words.first.map(String.init) ?? "", words.count > 1 ? Double(words[1]) ?? -1 : -1, result.output)
    }

    static func stack(api: String, settings: [String: String] = [:]) throws -> Stack {
        var all = ["WORKFCGI_API_SOCKET": api, "WORKFCGI_SYNC_SOCKET": "127.0.0.11:\(try Stack.freePort())"]
        for (k, v) in settings { all[k] = v }
        return try Stack(settings: all)
    }

    func waitForHealth(_ stack: Stack, _ target: String) throws {
        try stack.waitFor("workfcgi on \(target)") { (try? Self.talk(target))?.outcome == "answered" }
    }

    /// A local user who is not a front-end user connects over loopback TCP, with any REMOTE_ADDR it likes:
    /// closed before a record is read (it was served, as an operator if it said 127.0.0.1, before sock_diag).
    @Test func aLocalUserWhoIsNoFrontEndIsRefusedOverTCP() throws {
        let port = try Stack.freePort()
        let target = "127.0.0.11:\(port)"
        let stack = try Self.stack(api: target)
        try stack.start([.workfcgi])
        try waitForHealth(stack, target)

        let root = try Self.talk(target)
        #expect(root.outcome == "answered" && root.output.contains("200"), "root (this process's own user) is served: \(root.output)")
        for _ in 0..<2 {
            let nobody = try Self.talk(target, asNobody: true)
            #expect(nobody.outcome == "closed" || nobody.outcome == "reset", "uid 65534 was answered: \(nobody.output)")
        }
        let metrics = try Self.metrics(target)
        #expect(metrics.contains(#"workfcgi_fastcgi_refused_peers_total{reason="local_user"} 2"#), "\(metrics)")
        #expect(metrics.contains(#"workfcgi_fastcgi_refused_peers_total{reason="address"} 0"#))
        let log = stack.log(.workfcgi)
        #expect(log.components(separatedBy: "from a local user that is not a front-end user").count == 2, "logged once for both: \(log)")
        #expect(log.contains("65534"))
        #expect(stack.stop(.workfcgi) == 0)
    }

    /// `[::]` listens on both families whatever net.ipv6.bindv6only says (IPV6_V6ONLY is set to 0): an IPv4
    /// peer arrives as ::ffff:127.0.0.1, is matched as 127.0.0.1, and its socket's user is looked up as IPv4's.
    @Test func dualStackListenerChecksIPv4PeersToo() throws {
        let port = try Stack.freePort()
        let stack = try Self.stack(api: "[::]:\(port)")
        try stack.start([.workfcgi])
        try waitForHealth(stack, "127.0.0.1:\(port)")
        #expect(try Self.talk("[::1]:\(port)").outcome == "answered")
        let nobody = try Self.talk("127.0.0.1:\(port)", asNobody: true)
        #expect(nobody.outcome == "closed" || nobody.outcome == "reset", "\(nobody.output)")
        let nobody6 = try Self.talk("[::1]:\(port)", asNobody: true)
        #expect(nobody6.outcome == "closed" || nobody6.outcome == "reset", "\(nobody6.output)")
        #expect(try Self.metrics("127.0.0.1:\(port)").contains(#"workfcgi_fastcgi_refused_peers_total{reason="local_user"} 2"#))
    }

    /// A peer that sends its request a byte at a time is closed at the read deadline (here 1 s), whether it
    /// drips the params or the body, over TCP and over a unix socket alike; the request is never acted on.
    /// Before: each byte restarted a 30 s receive timeout, so the thread was held as long as the peer liked.
    @Test func aDrippedRequestIsClosedAtTheReadDeadline() throws {
        let port = try Stack.freePort()
        let target = "127.0.0.11:\(port)"
        let stack = try Self.stack(api: target, settings: ["WORKFCGI_FASTCGI_READ_TIMEOUT": "1s"])
        try stack.start([.workfcgi])
        try waitForHealth(stack, target)
        for mode in ["drip", "dripbody"] {
            let dripped = try Self.talk(target, mode)
            #expect(dripped.outcome == "closed" || dripped.outcome == "reset", "\(mode): \(dripped.output)")
            #expect(dripped.seconds >= 0.9 && dripped.seconds < 5, "\(mode): closed after the 1 s deadline: \(dripped.output)")
        }
        // The dripped /async never became a job.
        #expect(!stack.log(.workfcgi).contains("/async"), "\(stack.log(.workfcgi))")
        #expect(stack.log(.workfcgi).contains("whose request was not complete in time"))
        // A whole request is still answered at once.
        #expect(try Self.talk(target).outcome == "answered")
        #expect(stack.stop(.workfcgi) == 0)
    }

    @Test func aDrippedRequestOnAUnixSocketIsClosedToo() throws {
        let stack = try Stack(settings: ["WORKFCGI_FASTCGI_READ_TIMEOUT": "1s"])
        try stack.start([.workfcgi])
        let socket = stack.runDirectory + "/api.sock"
        let dripped = try Self.talk(socket, "drip")
        #expect(dripped.outcome == "closed" || dripped.outcome == "reset", "\(dripped.output)")
        #expect(dripped.seconds >= 0.9 && dripped.seconds < 5, "\(dripped.output)")
        #expect(try Self.talk(socket).outcome == "answered")
    }

    /// /metrics straight from workfcgi over TCP, as root (an operator: REMOTE_ADDR 127.0.0.1, Host localhost).
    static func metrics(_ target: String) throws -> String {
        let parts = target.split(separator: ":")
        let host = parts.dropLast().joined(separator: ":").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let params = [
            ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/metrics"), ("REQUEST_URI", "/metrics"), ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_HOST", "localhost"), ("SERVER_PROTOCOL", "HTTP/1.1"),
        ]
        return try FastCGIClient.request(host: host == "::" ? "127.0.0.1" : host, port: Int(parts.last!)!, params: params).body
    }
}
