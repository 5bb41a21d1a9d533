import Foundation
import Testing

/// Socket activation the way systemd does it (workfcgi.socket): a holder process binds and listens on both
/// FastCGI sockets and passes them as descriptors 3 and 4 with LISTEN_FDS/LISTEN_PID. workfcgi is then
/// restarted under load; nginx's connections queue in the held sockets meanwhile, and no request fails.
@Suite(.serialized) struct SocketActivationTests {
    static let holder = #"""
        import grp, json, os, signal, socket, subprocess, sys, threading, time, urllib.request
        workfcgi, base, run_dir, log_path = sys.argv[1:5]
        sockets = []
        for name in ("api.sock", "sync.sock"):
            path = os.path.join(run_dir, name)
            if os.path.exists(path): os.unlink(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            try: os.chown(path, -1, grp.getgrnam("www-data").gr_gid)
            except KeyError: pass
            os.chmod(path, 0o660)
            s.listen(256)
            sockets.append(s)
        log = open(log_path, "ab")
        def start():
            def fds():
                a, b = os.dup(sockets[0].fileno()), os.dup(sockets[1].fileno())
                os.dup2(a, 3); os.dup2(b, 4)
                os.set_inheritable(3, True); os.set_inheritable(4, True)
            # The shell's pid is the one workfcgi keeps across exec: LISTEN_PID must name it.
            return subprocess.Popen(["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=2; exec "$0"', workfcgi],
                                    preexec_fn=fds, close_fds=False, stdout=log, stderr=log)
        def request():
            body = json.dumps({"text": "restart", "callback_url": "http://127.0.0.1:9/"}).encode()
            r = urllib.request.Request(base + "/async", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(r, timeout=30) as response: return response.status
            except urllib.error.HTTPError as e: return e.code
            except Exception as e: return str(e)
        def ready():
            try: return urllib.request.urlopen(base + "/healthz", timeout=2).status == 200
            except Exception: return False
        first = start()
        deadline = time.time() + 20
        while not ready() and time.time() < deadline: time.sleep(0.05)
        results, lock, running = [], threading.Lock(), [True]
        def load():
            while running[0]:
                t0 = time.time(); status = request(); t1 = time.time()
                with lock: results.append((t0, t1, status))
        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads: t.start()
        time.sleep(1.0)
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
        down = time.time()
        time.sleep(0.5)  # no workfcgi at all for half a second
        second = start()
        up = time.time()
        time.sleep(1.5)
        running[0] = False
        for t in threads: t.join()
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
        failed = [s for (_, _, s) in results if s != 202]
        # Requests that were in flight while no workfcgi ran: they waited in the held sockets' backlog.
        waited = [s for (t0, t1, s) in results if t0 < up and t1 > down]
        print(json.dumps({"sent": len(results), "failed": len(failed), "failures": [str(s) for s in failed[:5]],
                          "waited_through_restart": len(waited), "first_exit": first.returncode, "second_exit": second.returncode,
                          "sockets_left": all(os.path.exists(os.path.join(run_dir, n)) for n in ("api.sock", "sync.sock"))}))
        """#

    @Test func aRestartUnderLoadDropsNoRequest() throws {
        let stack = try Stack(settings: ["WORKFCGI_BACKLOG_LIMIT": "1000000", "WORKFCGI_CLIENT_BACKLOG_LIMIT": "1000000"],
            rate: "100000r/s", burst: 100_000)
        try stack.start([.deliveryd, .nginx])
        defer { stack.stopAll() }
        let script = stack.directory.appendingPathComponent("holder.py")
        try Self.holder.write(to: script, atomically: true, encoding: .utf8)
        let log = stack.runDirectory + "/workfcgi.log"
        let env = stack.environment.filter { $0.key.hasPrefix("WORKFCGI_") }.map { "\($0.key)=\($0.value)" }
        let run = try Stack.run(
            "/usr/bin/env",
            env + ["python3", script.path, Stack.binDirectory.appendingPathComponent("workfcgi").path, stack.baseURL, stack.runDirectory, log])
        let line = try #require(run.output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(run.output)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let workfcgiLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(result["failed"] as? Int == 0, "\(result)\n\(workfcgiLog.suffix(1500))")
        #expect((result["sent"] as? Int ?? 0) > 50, "\(result)")
        #expect((result["waited_through_restart"] as? Int ?? 0) > 0, "requests were in flight while no workfcgi ran: \(result)")
        #expect(result["first_exit"] as? Int == 0 && result["second_exit"] as? Int == 0, "\(result)")
        #expect(result["sockets_left"] as? Bool == true, "workfcgi leaves systemd's sockets in place")
        #expect(workfcgiLog.contains("listening on a socket from systemd"))
    }
}
