import FastCGI
import FuzzDriver
import WorkEngine

// libFuzzer target for what a request carries: the body (strict JSON parser and validator) and the FastCGI
// params (read as NUL-separated NAME=VALUE pairs). Any bytes, either mode, must give a ParsedRequest or a
// ValidationError, never a crash; accepted input must survive a round trip; params never trap.
// Fuzz: scripts/fuzz request 300. Without -DFUZZING this builds a replayer: fuzz-request FILE...

func check(_ bytes: [UInt8]) {
    for mode in [RequestMode.sync, .async] {
        guard let parsed = try? RequestParser.parse(body: bytes, mode: mode) else { continue }
        // What was accepted must serialize and parse back to the same request.
        let again = try? RequestParser.parse(body: Array(parsed.input.text.utf8), mode: mode)
        precondition(again == parsed, "round trip changed the request")
    }
    checkParams(bytes)
}

func checkParams(_ bytes: [UInt8]) {
    let params = bytes.split(separator: 0).map { pair -> (name: String, value: String) in
        let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
        return (String(decoding: parts[0], as: UTF8.self), parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : "")
    }
    let request = HTTPRequest(params: params)
    precondition((request.declaredLength ?? 0) >= 0)
    if let at = request.receivedAt { precondition(at.isFinite) }
    for now: Int64 in [0, 1_800_000_000_000, .max, .min] {
        precondition(request.queuedMilliseconds(nowMillis: now) >= 0)
    }
}

@main struct Fuzz {
    static func main() throws { try FuzzDriver.run(check) }
}
