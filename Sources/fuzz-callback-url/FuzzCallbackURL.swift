import Delivery
import Foundation

// libFuzzer target for the callback URL parser and policy: any string must be accepted or refused with
// a reason, never crash; an accepted target's address must pass the policy's own range check.
// Fuzz: scripts/fuzz callback-url 300. Without -DFUZZING this builds a replayer: fuzz-callback-url FILE...

let policy = CallbackURLPolicy(
    allowPrivate: false, allowedPorts: [1...65_535],
    resolve: { host throws(CallbackURLRefusal) in
        // No network while fuzzing: names resolve to a fixed public or private address by their length.
        host.count % 2 == 0 ? [IPAddress("93.184.216.34")!] : [IPAddress("10.0.0.1")!]
    })

func check(_ bytes: [UInt8]) {
    let text = String(decoding: bytes, as: UTF8.self)
    guard let target = try? policy.vet(text) else { return }
    guard let address = target.address else { preconditionFailure("accepted without an address") }
    precondition(policy.permits(address), "accepted a blocked address \(address)")
    precondition(target.scheme == "http" || target.scheme == "https")
    precondition(!text.contains("@") || text.firstIndex(of: "@")! > (text.firstIndex(of: "/") ?? text.startIndex))
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
