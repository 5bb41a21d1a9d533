import Digest
import JSON

/// The report op: deterministic from its name. The checksum chains SHA-256 over "name:i" for each
/// record; every record also waits 10 ms, standing in for a database or disk read.
enum ReportOp {
    static let recordIOMilliseconds = 10

    static func run(records: Int, name: String, sleep: (Int) -> Void) -> JSONValue {
        let nameDigest = Digest.sha256(Array(name.utf8))
        var state = nameDigest
        for i in 0..<records {
            sleep(recordIOMilliseconds)
            state = Digest.sha256(state + Array("\(name):\(i)".utf8))
        }
        return [
            "report_id": .string("rpt_" + Digest.hex(nameDigest.prefix(8))),
            "report_name": .string(name),
            "records": .number(Double(records)),
            "status": "generated",
            "checksum": .string(Digest.hex(state)),
        ]
    }
}
