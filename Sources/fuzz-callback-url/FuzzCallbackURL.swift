import CallbackPolicy
import FuzzDriver

// libFuzzer target for the callback URL parser and policy: any string must be accepted or refused with
// a reason, never crash; an accepted target's address must pass the policy's own range check, and libcurl's
// own URL parser (curl_url) must read the same scheme, host and port from the URL as given and from the URL
// the client sends, so the address that was checked is the one curl talks to.
// Fuzz: scripts/fuzz callback-url 300. Without -DFUZZING this builds a replayer: fuzz-callback-url FILE...

let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [1...65_535])

/// No network while fuzzing: names resolve to a fixed public or private address by their length.
func resolve(_ host: String) -> [IPAddress] {
    host.count % 2 == 0 ? [IPAddress("93.184.216.34")!] : [IPAddress("10.0.0.1")!]
}

func check(_ bytes: [UInt8]) {
    let text = String(decoding: bytes, as: UTF8.self)
    // What workfcgi accepts (no lookup) must be what the full check accepts, or refuses for its address only.
    let checked = try? policy.check(text)
    guard let target = try? policy.vet(text, resolve: resolve) else {
        if let checked { precondition(checked.address == nil, "a literal passed check but not vet: \(text)") }
        return
    }
    precondition(checked != nil, "vet accepted what check refused: \(text)")
    guard let address = target.address else { preconditionFailure("accepted without an address") }
    precondition(policy.permits(address), "accepted a blocked address \(address)")
    precondition(target.scheme == "http" || target.scheme == "https")
    precondition(!text.contains("@") || text.firstIndex(of: "@")! > (text.firstIndex(of: "/") ?? text.startIndex))
    for spelling in [text, target.requestURL] {
        guard let curl = CurlURL(spelling) else { preconditionFailure("curl cannot parse accepted \(spelling)") }
        precondition(curl.names(target.host) && curl.port == target.port && curl.scheme == target.scheme, "curl reads \(curl) from \(spelling)")
    }
    // The URL sent is itself acceptable and means the same target.
    let again = try? CallbackURLPolicy.parse(target.requestURL)
    precondition(again?.host == target.host && again?.port == target.port, "requestURL changes the target")
}

@main struct Fuzz {
    static func main() throws { try FuzzDriver.run(check) }
}
