import Digest
import JSON

#if canImport(Glibc)
import Glibc
#endif

/// The `payload` ops: CPU work whose size grows geometrically with complexity, 50x from 1 to 10 (about
/// 0.1-0.2 s at 1 and 5-14 s at 10 on the 2-core development machine: `workbench`). Sizes are fixed functions of the
/// complexity, never of the clock, so results are deterministic.
enum ComputeOp {
    /// 50^((c-1)/9): 1 at complexity 1, 50 at complexity 10.
    static func scale(_ complexity: Int) -> Double {
        pow(50.0, Double(complexity - 1) / 9.0)
    }

    // Work per complexity-1 unit, calibrated with `swift run -c release workbench`.
    static let hashUnit = 300_000.0
    static let primeUnit = 200_000.0
    static let matrixUnit = 510.0
    static let transformUnit = 680.0

    static func size(_ kind: JobSpec.ComputeKind, complexity: Int) -> Int {
        let s = scale(complexity)
        switch kind {
        case .hash: return Int(hashUnit * s)
        // Trial division grows ~n^1.5, so n grows with s^(2/3) to keep time proportional to s.
        case .prime: return Int(primeUnit * pow(s, 2.0 / 3.0))
        // Multiplication is n^3.
        case .matrix: return Int(matrixUnit * cbrt(s))
        case .transform: return Int(transformUnit * s)
        }
    }

    static func run(_ kind: JobSpec.ComputeKind, complexity: Int) -> JSONValue {
        let n = size(kind, complexity: complexity)
        var result: [String: JSONValue] = ["operation": .string(kind.rawValue), "complexity": .number(Double(complexity))]
        switch kind {
        case .hash:
            result["iterations"] = .number(Double(n))
            result["digest"] = .string(Digest.hex(Digest.iteratedSHA256(Array("complexity:\(complexity)".utf8), times: n)))
        case .prime:
            result["n"] = .number(Double(n))
            result["prime"] = .number(Double(nthPrime(n)))
        case .matrix:
            let m = matrixProduct(size: n, seed: UInt64(complexity))
            result["size"] = .number(Double(n))
            result["trace"] = .number(Double(m.trace))
            result["checksum"] = .string(m.checksum)
        case .transform:
            result["rounds"] = .number(Double(n))
            result["digest"] = .string(transform(rounds: n))
        }
        return .object(result)
    }

    /// The n-th prime (1-based: nthPrime(1) == 2) by trial division over the primes found so far.
    static func nthPrime(_ n: Int) -> Int {
        precondition(n >= 1)
        var primes: [Int] = [2]
        primes.reserveCapacity(n)
        var candidate = 3
        while primes.count < n {
            var isPrime = true
            for p in primes {
                if p * p > candidate { break }
                if candidate % p == 0 { isPrime = false; break }
            }
            if isPrime { primes.append(candidate) }
            candidate += 2
        }
        return primes[n - 1]
    }

    /// A × B for two size×size matrices filled from a seeded generator (values 0..<1000, wrapping
    /// arithmetic). Returns the trace and the SHA-256 of the product's entries.
    static func matrixProduct(size n: Int, seed: UInt64) -> (trace: Int64, checksum: String) {
        var rng = SplitMix64(seed: seed)
        let a = (0..<(n * n)).map { _ in Int64(rng.next() % 1000) }
        let b = (0..<(n * n)).map { _ in Int64(rng.next() % 1000) }
        var c = [Int64](repeating: 0, count: n * n)
        for i in 0..<n {
            for k in 0..<n {
                let aik = a[i * n + k]
                for j in 0..<n { c[i * n + j] &+= aik &* b[k * n + j] }
            }
        }
        var trace: Int64 = 0
        for i in 0..<n { trace &+= c[i * n + i] }
        var bytes = [UInt8]()
        bytes.reserveCapacity(n * n * 8)
        for v in c { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        return (trace, Digest.hex(Digest.sha256(bytes)))
    }

    /// A JSON transformation, `rounds` times: build 200 seeded records, keep those whose score is not a
    /// multiple of 3, group them by tag with totals, serialize the grouping; each round's SHA-256 seeds the next.
    static func transform(rounds: Int) -> String {
        var digest = Digest.sha256(Array("transform".utf8))
        for _ in 0..<rounds {
            var rng = SplitMix64(seed: digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
            let tags = ["alpha", "beta", "gamma", "delta"]
            var groups: [String: (count: Int, total: Int, names: [JSONValue])] = [:]
            for id in 0..<200 {
                let score = Int(rng.next() % 10_000)
                guard score % 3 != 0 else { continue }
                let tag = tags[Int(rng.next() % 4)]
                var g = groups[tag] ?? (0, 0, [])
                g.count += 1
                g.total += score * 2
                g.names.append(.string("ITEM-\(id)"))
                groups[tag] = g
            }
            let document = JSONValue.object(groups.mapValues {
                ["count": .number(Double($0.count)), "total": .number(Double($0.total)), "names": .array($0.names)]
            })
            digest = Digest.sha256(Array(document.text.utf8))
        }
        return Digest.hex(digest)
    }
}

/// A small seeded generator (SplitMix64) so "random" inputs are the same on every machine.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
