import Foundation
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

#if FUZZING
/// libFuzzer's entry when the program has its own main (SwiftPM executables always do).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

@main struct Fuzz {
    static func main() throws {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        _ = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            check(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
        #else
        // Replay: run saved inputs (the regression corpus) through the same check.
        for path in CommandLine.arguments.dropFirst() {
            check(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        #endif
    }
}
