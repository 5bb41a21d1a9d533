import Foundation
import Harness
import Testing

/// The operator page in a real browser: headless Chromium (Debian's package) driven over the DevTools
/// protocol on a pipe (--remote-debugging-pipe), with no library between.
@Suite(.serialized) struct OperatorPageTests {
    /// Loads /ui, finds the job, opens its page, reads the trace, clicks "Redeliver", follows the redirect;
    /// prints what it saw as JSON and saves a screenshot of the overview.
    static let driver = #"""
        import base64, json, os, subprocess, sys, tempfile, time
        base, job, shot = sys.argv[1], sys.argv[2], sys.argv[3]
        c_in, to_chrome = os.pipe()
        from_chrome, c_out = os.pipe()
        def fds():
            # Chromium reads commands from descriptor 3 and writes to 4. Out of the way first (either may
            # already be 3 or 4), and inheritable: os.pipe() descriptors close on exec.
            a, b = os.dup(c_in), os.dup(c_out)
            os.dup2(a, 3); os.dup2(b, 4)
            os.set_inheritable(3, True); os.set_inheritable(4, True)
        profile = tempfile.mkdtemp()
        chrome = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-pipe", "--user-data-dir=" + profile, "--window-size=1280,1800", "about:blank"],
            close_fds=False, preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(c_in); os.close(c_out)
        reader = os.fdopen(from_chrome, "rb")
        pending = b""
        counter = [0]
        def send(method, params=None, session=None):
            counter[0] += 1
            msg = {"id": counter[0], "method": method, "params": params or {}}
            if session: msg["sessionId"] = session
            os.write(to_chrome, json.dumps(msg).encode() + b"\0")
            global pending
            while True:
                while b"\0" not in pending:
                    chunk = os.read(from_chrome, 65536)
                    if not chunk: raise SystemExit("chromium closed the pipe")
                    pending += chunk
                raw, pending = pending.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == counter[0]:
                    if "error" in reply: raise SystemExit(f"{method}: {reply['error']}")
                    return reply.get("result", {})
        def js(session, expression):
            return send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)["result"].get("value")
        def wait(session, condition, seconds=15):
            deadline = time.time() + seconds
            while time.time() < deadline:
                try:
                    if js(session, condition): return True
                except SystemExit:
                    pass
                time.sleep(0.1)
            return False
        seen = {}
        try:
            target = send("Target.createTarget", {"url": base + "/ui"})["targetId"]
            session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            send("Page.enable", session=session)
            seen["overview"] = wait(session, f"document.readyState == 'complete' && document.body.innerText.includes('{job}')")
            seen["overview_text"] = js(session, "document.body.innerText")[:3000]
            seen["scripts"] = js(session, "document.scripts.length")
            png = send("Page.captureScreenshot", {"format": "png"}, session)["data"]
            open(shot, "wb").write(base64.b64decode(png))
            js(session, f"document.querySelector('a[href=\"/ui/requests/{job}\"]').click()")
            seen["detail"] = wait(session, "location.pathname.startsWith('/ui/requests/') && document.readyState == 'complete' && !!document.getElementById('trace')")
            seen["trace"] = js(session, "document.getElementById('trace') ? document.getElementById('trace').innerText : ''")
            js(session, "document.getElementById('redeliver').click()")
            seen["redirected"] = wait(session, "location.search.includes('redelivered=1') && document.readyState == 'complete'")
            seen["after"] = js(session, "document.body.innerText")[:3000]
        finally:
            print(json.dumps(seen))
            chrome.kill()
        """#

    @Test func theOperatorPageShowsAJobAndItsButtonRedelivers() async throws {
        let (stack, receiver, port) = try await Stack.startedWithReceiver()
        defer { stack.stopAll() }
        let id = try stack.submit(#"{"text": "seen in a browser", "callback_url": "http://127.0.0.1:\#(port)/ok"}"#)
        try stack.waitForStatus(id, "completed")
        let script = stack.directory.appendingPathComponent("driver.py")
        try Self.driver.write(to: script, atomically: true, encoding: .utf8)
        let shot = stack.directory.appendingPathComponent("ui.png").path
        let run = try Stack.run("/usr/bin/env", ["python3", script.path, stack.baseURL, id, shot])
        let line = try #require(run.output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(run.output)")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(run.output)")

        #expect(seen["overview"] as? Bool == true, "the job on the overview: \(seen["overview_text"] ?? run.output)")
        let overview = seen["overview_text"] as? String ?? ""
        #expect(overview.contains("deliveryd") && overview.contains("sync slots in use") && overview.contains("open circuits"))
        #expect(overview.contains("Now") && overview.contains("The last hour"), "the Now panel and the charts, in a browser")
        #expect(seen["scripts"] as? Int == 0, "no scripts on the page")
        #expect(seen["detail"] as? Bool == true)
        let trace = seen["trace"] as? String ?? ""
        #expect(trace.contains("200"), "the delivery trace shows the delivered attempt: \(trace)")
        #expect(seen["redirected"] as? Bool == true, "\(seen)")
        #expect((seen["after"] as? String ?? "").contains("Redelivery queued"))
        // The button really redelivered: the receiver gets the same webhook-id a second time.
        #expect(await receiver.wait(timeout: 20) { $0.filter { $0.webhookID == id }.count == 2 })
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        #expect(size > 10_000, "a screenshot was taken (\(size) bytes)")
        if let keep = ProcessInfo.processInfo.environment["WORKFCGI_UI_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: shot, toPath: keep)
        }
        await receiver.stop()
    }

    /// Another site's form cannot make an operator's browser redeliver, and a forged token is refused.
    @Test func redeliveryWithoutThePagesTokenOrFromAnotherOriginIsRefused() throws {
        let stack = try Stack()
        try stack.start([.workfcgi, .nginx])
        defer { stack.stopAll() }
        let id = "01a21618-39e2-7f09-91be-f5faf9af3c21"
        let client = HTTPClient()
        let forged = try client.request(
            "POST", stack.baseURL + "/ui/requests/\(id)/redeliver", body: Array("token=abc".utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded"])
        #expect(forged.status == 403)
        let crossSite = try client.request(
            "POST", stack.baseURL + "/ui/requests/\(id)/redeliver", body: Array("token=abc".utf8),
            headers: ["Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"])
        #expect(crossSite.status == 403 && crossSite.text.contains("cross-site"))
        #expect(try HTTPClient(sourceAddress: "127.0.0.2").get(stack.baseURL + "/ui").status == 403, "operators only")
    }
}
