import Foundation

#if FUZZING
/// libFuzzer's entry for programs with their own main (SwiftPM executables always have one).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

/// Runs a fuzz check. Built with -DFUZZING (scripts/fuzz) it hands control to libFuzzer; built plainly it
/// replays the files named on the command line, so saved inputs can be checked without the fuzzer.
public enum FuzzDriver {
    /// The check in use: a C callback cannot capture, so it is reached through this one global.
    nonisolated(unsafe) private static var check: ([UInt8]) -> Void = { _ in }

    public static func run(_ check: @escaping ([UInt8]) -> Void) throws {
        #if FUZZING
        Self.check = check
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        _ = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            FuzzDriver.check(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
            return 0
        }
        #else
        for path in CommandLine.arguments.dropFirst() {
            check(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        #endif
    }
}
