import Testing

@testable import CallbackPolicy

@Suite struct CallbackURLPolicyTests {
    /// A resolver with fixed answers, so the table does not depend on this machine's DNS.
    static let fakeDNS: @Sendable (String) throws(CallbackURLRefusal) -> [IPAddress] = { host throws(CallbackURLRefusal) in
        let table: [String: [String]] = [
            "hooks.example.com": ["93.184.216.34"],
            "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
            "rebind.example.com": ["93.184.216.34", "127.0.0.1"],
            "metadata.example.com": ["169.254.169.254"],
            "mapped.example.com": ["::ffff:10.0.0.1"],
        ]
        guard let addresses = table[host] else { throw CallbackURLRefusal("host \(host) does not resolve") }
        return addresses.compactMap(IPAddress.init)
    }

    let strict = CallbackURLPolicy(allowPrivate: false, allowedPorts: [80...80, 443...443, 8000...9999], resolve: fakeDNS)

    @Test(arguments: [
        "https://hooks.example.com/callback",
        "http://hooks.example.com:8080/a?b=c",
        "HTTPS://HOOKS.EXAMPLE.COM./x",
        "https://v6.example.com/",
        "http://93.184.216.34/x",
        "http://[2606:2800:220:1:248:1893:25c8:1946]:443/",
    ])
    func accepts(url: String) throws {
        let target = try strict.vet(url)
        #expect(target.address != nil)
        // What curl is given names the same target, spelled canonically.
        let curl = try #require(CurlURL(target.requestURL))
        #expect(curl.names(target.host) && curl.port == target.port)
        #expect(!target.requestURL.contains("#") && !target.host.hasSuffix("."))
    }

    @Test func requestURLIsCanonical() throws {
        #expect(try strict.vet("HTTPS://HOOKS.EXAMPLE.COM./x?y=1#frag").requestURL == "https://hooks.example.com:443/x?y=1")
        #expect(try strict.vet("http://hooks.example.com:8080").requestURL == "http://hooks.example.com:8080/")
        #expect(try strict.vet("http://hooks.example.com?q").requestURL == "http://hooks.example.com:80/?q")
    }

    @Test(arguments: [
        "ftp://hooks.example.com/", "file:///etc/passwd", "gopher://x.example/", "javascript:alert(1)", "hooks.example.com/x",
        "http://user:pw@hooks.example.com/", "http://user@hooks.example.com/", "http:///path", "http://:80/",
        "http://hooks.example.com:0/", "http://hooks.example.com:65536/", "http://hooks.example.com:22/",
        "http://hooks.example.com:abc/", "http://hooks example.com/",
        "http://127.0.0.1/", "http://127.0.0.1:8080/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
        "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://224.0.0.1/",
        "http://240.0.0.1/", "http://198.18.0.1/", "http://192.0.0.8/",
        "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://0/", "http://017700000001/",
        "http://127.000.000.001/", "http://0x7f.0.0.1/",
        "http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[fe80::1%25eth0]/",
        "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[ff02::1]/", "http://[64:ff9b::7f00:1]/",
        "http://localhost/", "http://LOCALHOST:8080/", "http://api.localhost/", "http://db.internal/",
        "http://rebind.example.com/", "http://metadata.example.com/", "http://mapped.example.com/",
        "http://nxdomain.example.com/", "http://exa_mple.com/", "http://-bad.example.com/", "http://a..b.com/",
        "http://hooks.example.com\\@evil.example/",
        // IPv6 forms that embed or route to IPv4 or site-local space.
        "http://[::127.0.0.1]/", "http://[::a00:1]/", "http://[2002:7f00:1::1]/", "http://[2002:c0a8:101::]/",
        "http://[64:ff9b:1::7f00:1]/", "http://[fec0::1]/", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ])
    func refuses(url: String) {
        #expect(throws: CallbackURLRefusal.self, "\(url) was accepted") { try strict.vet(url) }
    }

    @Test func allowPrivateOpensAddressesButNotSchemesOrUserinfo() throws {
        let open = CallbackURLPolicy(allowPrivate: true, allowedPorts: [1...65_535], resolve: Self.fakeDNS)
        #expect(try open.vet("http://127.0.0.1:9100/cb").address == IPAddress("127.0.0.1"))
        #expect(try open.vet("http://[::1]:9100/cb").address == IPAddress("::1"))
        #expect(throws: CallbackURLRefusal.self) { try open.vet("ftp://127.0.0.1/") }
        #expect(throws: CallbackURLRefusal.self) { try open.vet("http://a:b@127.0.0.1/") }
        #expect(throws: CallbackURLRefusal.self) { try open.vet("http://2130706433/") }
    }

    @Test func allowListOpensExactlyItsRange() throws {
        let policy = CallbackURLPolicy(
            allowPrivate: false, allowedPorts: [1...65_535], allowCIDRs: [CIDR("10.1.0.0/16")!], resolve: Self.fakeDNS)
        #expect(try policy.vet("http://10.1.200.3/").address == IPAddress("10.1.200.3"))
        #expect(throws: CallbackURLRefusal.self) { try policy.vet("http://10.2.0.1/") }
        #expect(throws: CallbackURLRefusal.self) { try policy.vet("http://127.0.0.1/") }
    }

    @Test func systemResolverSeesLocalhostAsLoopback() throws {
        // /etc/hosts maps localhost to loopback: the strict policy must refuse it by address too.
        let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [1...65_535])
        let addresses = try CallbackURLPolicy.systemResolve("localhost")
        #expect(!addresses.isEmpty && addresses.allSatisfy { !policy.permits($0) })
    }

    @Test func cidrMatching() {
        #expect(IPAddress("10.255.1.1")!.isIn(CIDR("10.0.0.0/8")!))
        #expect(!IPAddress("11.0.0.1")!.isIn(CIDR("10.0.0.0/8")!))
        #expect(IPAddress("172.31.255.255")!.isIn(CIDR("172.16.0.0/12")!))
        #expect(!IPAddress("172.32.0.0")!.isIn(CIDR("172.16.0.0/12")!))
        #expect(IPAddress("fdff::1")!.isIn(CIDR("fc00::/7")!))
        #expect(!IPAddress("10.0.0.1")!.isIn(CIDR("fc00::/7")!))
        #expect(IPAddress("1.2.3.4")!.isIn(CIDR("0.0.0.0/0")!))
        #expect(IPAddress("01.2.3.4") == nil)
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("256.1.1.1") == nil)
        for bad in ["", ".", "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", "00.1.1.1", "1000.1.1.1", "１.2.3.4", "1.2.3.-4", "0x7f.0.0.1"] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
        #expect(IPAddress("0.0.0.0")?.bytes == [0, 0, 0, 0])
        #expect(IPAddress("255.255.255.255")?.bytes == [255, 255, 255, 255])
        #expect(IPAddress("10.0.100.9")?.bytes == [10, 0, 100, 9])
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "::ffff:127.0.0.1")
    }
}
