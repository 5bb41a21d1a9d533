import FuzzDriver
import WorkEngine

// libFuzzer target for the request parser and validator: any bytes, either mode, must give a
// ParsedRequest or a ValidationError, never a crash; accepted input must survive a round trip.
// Fuzz: scripts/fuzz request 300. Without -DFUZZING this builds a replayer: fuzz-request FILE...

func check(_ bytes: [UInt8]) {
    for mode in [RequestMode.sync, .async] {
        guard let parsed = try? RequestParser.parse(body: bytes, mode: mode) else { continue }
        // What was accepted must serialize and parse back to the same request.
        let again = try? RequestParser.parse(body: Array(parsed.input.text.utf8), mode: mode)
        precondition(again == parsed, "round trip changed the request")
    }
}

@main struct Fuzz {
    static func main() throws { try FuzzDriver.run(check) }
}
