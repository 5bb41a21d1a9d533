import Foundation
import WorkEngine

// Prints how long each op takes at chosen complexities: the figures ComputeOp's units are calibrated by.
// Usage: swift run -c release workbench [complexity ...]   (default: 1 5 10)
let complexities = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let engine = WorkEngine()
print("op          complexity   median ms (3 runs)")
for c in complexities.isEmpty ? [1, 5, 10] : complexities {
    for kind in JobSpec.ComputeKind.allCases {
        var times: [Double] = []
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = engine.run(.compute(kind: kind, complexity: c))
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        times.sort()
        print(kind.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0) + " \(c)".padding(toLength: 11, withPad: " ", startingAt: 0) + String(format: "%12.1f", times[1]))
    }
}
