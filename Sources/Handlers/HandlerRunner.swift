import CSystem
import Config
import Foundation
import Logging
import WorkEngine

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// Runs handler programs, CGI-style: the input JSON on stdin, the result JSON on stdout, a failure's story
/// on stderr and in the exit status. Each run gets a fresh working folder (removed afterwards), an
/// environment of `environmentNames` only, its own process group (killed, grandchildren included, at the
/// timeout and as soon as the program itself exits), resource limits, and idle CPU priority.
public final class HandlerRunner: HandlerRunning {
    public let registry: HandlerRegistry
    private let settings: HandlerSettings
    /// The nice value of every run (the daemons pass their compute threads': `Priority.compute`).
    private let nice: Int32
    public let metrics = HandlerMetrics()

    /// Every variable a handler's environment has: nothing of the daemon's own leaks (secrets, paths).
    public static let environmentNames = ["LANG", "PATH", "TMPDIR", "WORKFCGI_MODE", "WORKFCGI_REQUEST_ID"]
    static let path = "/usr/local/bin:/usr/bin:/bin"

    public init(registry: HandlerRegistry, settings: HandlerSettings, nice: Int32) {
        self.registry = registry
        self.settings = settings
        self.nice = nice
    }

    /// The runner of the configured folder (read now: a folder that cannot be trusted stops the start), or
    /// nil when WORKFCGI_HANDLERS_DIR is unset.
    public static func start(_ settings: HandlerSettings, logger: Logger, nice: Int32) throws -> HandlerRunner? {
        guard let folder = settings.folder else { return nil }
        return HandlerRunner(registry: try HandlerRegistry(folder: folder, logger: logger), settings: settings, nice: nice)
    }

    public func isInstalled(_ name: String) -> Bool { registry.path(of: name) != nil }

    public func run(handler name: String, input: JSONValue, context: WorkContext) -> WorkOutcome {
        let started = DispatchTime.now().uptimeNanoseconds
        let timeout = settings.timeout(for: name)
        let outcome: WorkOutcome
        if let path = registry.path(of: name) {
            let end = Self.refusal(path).map { RunEnd.notStarted($0) } ?? execute(path, input: input, context: context, timeout: timeout)
            outcome = RunVerdict.decide(end, handler: name, timeout: timeout)
        } else {
            let run = HandlerRun(handler: name, outcome: .notStarted("no handler \(name) is installed in \(registry.folder)"))
            outcome = WorkOutcome(run, result: nil)
        }
        if let run = outcome.handlerRun {
            metrics.record(run, mode: context.mode, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        }
        return outcome
    }

    private static func refusal(_ path: String) -> String? { HandlerRegistry.refusal(path) }

    /// Starts the program and carries out the kill schedule until it and its group are gone.
    private func execute(_ path: String, input: JSONValue, context: WorkContext, timeout: Double) -> RunEnd {
        guard let folder = WorkingFolder.create() else { return .notStarted("cannot create a working folder: \(Self.errnoText())") }
        defer { WorkingFolder.remove(folder) }
        // stdin is a memory file, not a pipe: a program that never reads it cannot block the runner.
        let stdin = workfcgi_memfd("handler-input")
        guard stdin >= 0 else { return .notStarted("memfd_create: \(Self.errnoText())") }
        defer { close(stdin) }
        let bytes = Array(input.text.utf8)
        guard Self.writeAll(stdin, bytes), lseek(stdin, 0, SEEK_SET) == 0 else { return .notStarted("writing stdin: \(Self.errnoText())") }
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard workfcgi_pipe(&out) == 0 else { return .notStarted("pipe: \(Self.errnoText())") }
        guard workfcgi_pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            return .notStarted("pipe: \(Self.errnoText())")
        }
        defer { close(out[0]); close(err[0]) }
        let environment = [
            "LANG=C.UTF-8", "PATH=\(Self.path)", "TMPDIR=\(folder)", "WORKFCGI_MODE=\(context.mode.rawValue)",
            "WORKFCGI_REQUEST_ID=\(context.requestID)",
        ]
        var envp = environment.map { strdup($0) } + [nil]
        defer { for p in envp { free(p) } }
        var pid: Int32 = 0
        let rc = workfcgi_spawn_handler(path, &envp, stdin, out[1], err[1], folder, &pid)
        close(out[1])
        close(err[1])
        guard rc == 0 else { return .notStarted("posix_spawn: \(String(cString: strerror(rc)))") }
        limit(pid)
        return supervise(pid, stdout: out[0], stderr: err[0], timeout: timeout)
    }

    /// The resource limits and the nice value, applied the moment posix_spawn returns (it cannot set them
    /// itself, nor SCHED_IDLE); the program is then still being loaded.
    private func limit(_ pid: Int32) {
        workfcgi_limit_process(
            pid, UInt64(settings.cpuSeconds), UInt64(settings.memoryBytes), UInt64(settings.openFiles), UInt64(settings.processes ?? 0))
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), nice)
    }

    /// Reads stdout (bounded) and stderr (its tail) until the program exits or the schedule kills it; then
    /// kills what is left of its group and reaps it. The group's id stays the program's own until it is
    /// reaped, so the kill cannot reach a stranger that got the number.
    private func supervise(_ pid: Int32, stdout: Int32, stderr: Int32, timeout: Double) -> RunEnd {
        let schedule = KillSchedule(timeout: timeout, grace: HandlerSettings.killGraceSeconds)
        var output = BoundedOutput(limit: Limits.resultBytes)
        var tail = TailBuffer(capacity: HandlerRun.stderrTailBytes)
        let pidfd = workfcgi_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        let start = DispatchTime.now().uptimeNanoseconds
        var sent: KillSchedule.Step?
        var exited = false
        var exitedAt: UInt64 = 0
        var open = (stdout: true, stderr: true)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            let elapsed = Double(now - start) / 1e9
            if exited {
                // The program is gone and its group killed: what is still buffered in the pipes is read, but
                // a process that left the group (setsid) and holds them open is not waited for long.
                if !open.stdout && !open.stderr || now - exitedAt > 200_000_000 { break }
            } else {
                switch schedule.step(elapsed: elapsed, sent: sent) {
                case .terminate:
                    kill(-pid, SIGTERM)
                    sent = .terminate
                case .kill:
                    kill(-pid, SIGKILL)
                    sent = .kill
                case .wait: break
                }
            }
            var wait = 50.0
            if case .wait(let seconds) = schedule.step(elapsed: elapsed, sent: sent), !exited { wait = min(wait, seconds * 1000) }
            var fds = [
                pollfd(fd: open.stdout ? stdout : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: open.stderr ? stderr : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: exited ? -1 : pidfd, events: Int16(POLLIN), revents: 0),
            ]
            // Without a pidfd (an old kernel) the exit is noticed by polling waitid every 10 ms.
            if pidfd < 0 { wait = min(wait, 10) }
            _ = poll(&fds, 3, Int32(max(1, wait.rounded(.up))))
            if fds[0].revents != 0 {
                let n = read(stdout, &buffer, buffer.count)
                if n > 0 {
                    if !output.append(buffer[0..<n]) {
                        // Over the bound: the run is a failure; nothing more is read or kept.
                        kill(-pid, SIGKILL)
                        sent = .kill
                        open.stdout = false
                    }
                } else if n == 0 || errno != EINTR && errno != EAGAIN {
                    open.stdout = false
                }
            }
            if fds[1].revents != 0 {
                let n = read(stderr, &buffer, buffer.count)
                if n > 0 { tail.append(buffer[0..<n]) } else if n == 0 || errno != EINTR && errno != EAGAIN { open.stderr = false }
            }
            if !exited, pidfd < 0 || fds[2].revents != 0 {
                if workfcgi_has_exited(pid) == 1 {
                    exited = true
                    exitedAt = DispatchTime.now().uptimeNanoseconds
                    kill(-pid, SIGKILL)  // anything it started and left behind
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let termination: RunEnd.Termination =
            status & 0x7f == 0 ? .exited(Int((status >> 8) & 0xff)) : .signalled(Int(status & 0x7f))
        return RunEnd(termination: termination, timedOut: sent != nil && !output.overflowed, stdout: output, stderr: tail)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

extension RunEnd {
    static func notStarted(_ why: String) -> RunEnd {
        RunEnd(
            termination: .notStarted(why), timedOut: false, stdout: BoundedOutput(limit: Limits.resultBytes),
            stderr: TailBuffer(capacity: HandlerRun.stderrTailBytes))
    }
}
