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

    let strict = CallbackURLPolicy(allowPrivate: false, allowedPorts: [80...80, 443...443, 8000...9999])

    /// The whole check: `check`, then `pin` to what the fixed table answers.
    func vet(_ url: String, _ policy: CallbackURLPolicy? = nil) throws(CallbackURLRefusal) -> CallbackTarget {
        try (policy ?? strict).vet(url, resolve: Self.fakeDNS)
    }

    @Test(arguments: [
        "https://hooks.example.com/callback",
        "http://hooks.example.com:8080/a?b=c",
        "HTTPS://HOOKS.EXAMPLE.COM./x",
        "https://v6.example.com/",
        "http://93.184.216.34/x",
        "http://[2606:2800:220:1:248:1893:25c8:1946]:443/",
    ])
    func accepts(url: String) throws {
        let target = try vet(url)
        #expect(target.address != nil)
        // What curl is given names the same target, spelled canonically.
        let curl = try #require(CurlURL(target.requestURL))
        #expect(curl.names(target.host) && curl.port == target.port)
        #expect(!target.requestURL.contains("#") && !target.host.hasSuffix("."))
    }

    @Test func requestURLIsCanonical() throws {
        #expect(try vet("HTTPS://HOOKS.EXAMPLE.COM./x?y=1#frag").requestURL == "https://hooks.example.com:443/x?y=1")
        #expect(try vet("http://hooks.example.com:8080").requestURL == "http://hooks.example.com:8080/")
        #expect(try vet("http://hooks.example.com?q").requestURL == "http://hooks.example.com:80/?q")
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
        #expect(throws: CallbackURLRefusal.self, "\(url) was accepted") { try vet(url) }
    }

    @Test func allowPrivateOpensAddressesButNotSchemesOrUserinfo() throws {
        let open = CallbackURLPolicy(allowPrivate: true, allowedPorts: [1...65_535])
        #expect(try vet("http://127.0.0.1:9100/cb", open).address == IPAddress("127.0.0.1"))
        #expect(try vet("http://[::1]:9100/cb", open).address == IPAddress("::1"))
        #expect(throws: CallbackURLRefusal.self) { try vet("ftp://127.0.0.1/", open) }
        #expect(throws: CallbackURLRefusal.self) { try vet("http://a:b@127.0.0.1/", open) }
        #expect(throws: CallbackURLRefusal.self) { try vet("http://2130706433/", open) }
    }

    @Test func allowListOpensExactlyItsRange() throws {
        let policy = CallbackURLPolicy(allowPrivate: false, allowedPorts: [1...65_535], allowCIDRs: [CIDR("10.1.0.0/16")!])
        #expect(try vet("http://10.1.200.3/", policy).address == IPAddress("10.1.200.3"))
        #expect(throws: CallbackURLRefusal.self) { try vet("http://10.2.0.1/", policy) }
        #expect(throws: CallbackURLRefusal.self) { try vet("http://127.0.0.1/", policy) }
        // An IPv4 range does not open the same address written as IPv6.
        #expect(throws: CallbackURLRefusal.self) { try vet("http://[::ffff:10.1.200.3]/", policy) }
    }

    /// What workfcgi runs at accept: everything but the lookup. A name passes whatever it would resolve to
    /// (deliveryd resolves and pins it before each attempt); a literal is pinned and checked at once.
    @Test func checkNeverResolves() throws {
        for url in ["http://nxdomain.example.com/", "http://rebind.example.com/", "http://metadata.example.com:8080/x"] {
            let target = try strict.check(url)
            #expect(target.address == nil, "\(url)")
            #expect(throws: CallbackURLRefusal.self, "\(url) resolves to a blocked address") { try vet(url) }
        }
        #expect(try strict.check("http://93.184.216.34/x").address == IPAddress("93.184.216.34"))
        for url in ["http://127.0.0.1:9000/", "http://[::ffff:0:127.0.0.1]:9000/", "http://localhost/", "http://h.example.com:22/", "ftp://h.example.com/"] {
            #expect(throws: CallbackURLRefusal.self, "\(url) passed the check") { try strict.check(url) }
        }
        var message = ""
        do { _ = try strict.check("http://10.0.0.1/") } catch { message = error.message }
        #expect(message.contains("10.0.0.1 is a private or reserved address") && message.contains("WORKFCGI_ALLOW_PRIVATE_CALLBACKS"), "\(message)")
    }

    @Test func pinChecksEveryAddressAndKeepsTheFirst() throws {
        let target = try strict.check("https://hooks.example.com/cb")
        let a = IPAddress("93.184.216.34")!, b = IPAddress("2606:2800:220:1:248:1893:25c8:1946")!
        #expect(try strict.pin(target, to: [a, b]).address == a)
        #expect(try strict.pin(target, to: [a, b]).endpoint == "93.184.216.34:443")
        #expect(try strict.pin(target, to: [b]).endpoint == "[2606:2800:220:1:248:1893:25c8:1946]:443")
        #expect(throws: CallbackURLRefusal.self) { try strict.pin(target, to: []) }
        #expect(throws: CallbackURLRefusal.self) { try strict.pin(target, to: [a, IPAddress("::ffff:0:10.0.0.1")!]) }
    }

    /// Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries that is not globally
    /// reachable (and the reserved IPv6 space around them), by its first and last address.
    @Test(arguments: [
        // IPv4 special-purpose registry.
        ("0.0.0.0/8", ["0.0.0.0", "0.255.255.255"]), ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255"]),
        ("100.64.0.0/10", ["100.64.0.0", "100.127.255.255"]), ("127.0.0.0/8", ["127.0.0.1", "127.255.255.255"]),
        ("169.254.0.0/16", ["169.254.0.0", "169.254.255.255"]), ("172.16.0.0/12", ["172.16.0.0", "172.31.255.255"]),
        ("192.0.0.0/24 (DS-Lite, NAT64 discovery, anycast)", ["192.0.0.0", "192.0.0.8", "192.0.0.170", "192.0.0.255"]),
        ("192.0.2.0/24", ["192.0.2.0", "192.0.2.255"]), ("192.88.99.0/24 (deprecated 6to4 relay)", ["192.88.99.1"]),
        ("192.168.0.0/16", ["192.168.0.0", "192.168.255.255"]), ("198.18.0.0/15", ["198.18.0.0", "198.19.255.255"]),
        ("198.51.100.0/24", ["198.51.100.7"]), ("203.0.113.0/24", ["203.0.113.9"]),
        ("224.0.0.0/4 multicast", ["224.0.0.1", "239.255.255.255"]), ("240.0.0.0/4", ["240.0.0.1", "255.255.255.254"]),
        ("255.255.255.255/32", ["255.255.255.255"]),
        // IPv6 special-purpose registry.
        ("::/128", ["::"]), ("::1/128", ["::1"]), ("::ffff:0:0/96 IPv4-mapped", ["::ffff:127.0.0.1", "::ffff:255.255.255.255"]),
        ("::ffff:0:0:0/96 IPv4-translated", ["::ffff:0:127.0.0.1", "::ffff:0:0:0", "::ffff:0:ffff:ffff"]),
        ("::/96 IPv4-compatible", ["::127.0.0.1", "::10.0.0.1"]), ("::/8 reserved", ["::1:0:0:0", "ff:ffff::1"]),
        ("64:ff9b::/96 NAT64", ["64:ff9b::7f00:1", "64:ff9b::ffff:ffff"]), ("64:ff9b:1::/48", ["64:ff9b:1::1", "64:ff9b:1:ffff::1"]),
        ("100::/64 discard", ["100::", "100::ffff:ffff:ffff:ffff"]), ("100:0:0:1::/64 dummy", ["100:0:0:1::1"]),
        ("2001::/23 IETF protocol assignments", ["2001::1", "2001:1::1", "2001:2::1", "2001:3::1", "2001:4:112::1", "2001:10::1", "2001:20::1", "2001:30::1", "2001:1ff:ffff::1"]),
        ("2001:db8::/32 documentation", ["2001:db8::1", "2001:db8:ffff::1"]), ("2002::/16 6to4", ["2002:7f00:1::1", "2002:ffff::1"]),
        ("3fff::/20 documentation", ["3fff::1", "3fff:fff:ffff::1"]), ("5f00::/16 SRv6 SIDs", ["5f00::1", "5f00:ffff::1"]),
        ("fc00::/7 unique local", ["fc00::1", "fdff:ffff::1"]), ("fe80::/10 link-local", ["fe80::1", "febf::1"]),
        ("fec0::/10 site-local", ["fec0::1", "feff::1"]), ("ff00::/8 multicast", ["ff02::1", "ffff::1"]),
        // IPv6 space the IETF keeps reserved (outside 2000::/3).
        ("reserved 0100::/8 .. 1000::/4", ["101::1", "200::1", "400::1", "800::1", "1000::1", "1fff::1"]),
        ("reserved 4000::/3 .. f800::/6", ["4000::1", "6000::1", "8000::1", "a000::1", "c000::1", "e000::1", "f000::1", "f800::1", "fe00::1"]),
    ])
    func blocksEverySpecialPurposeRange(block: String, samples: [String]) throws {
        for sample in samples {
            let address = try #require(IPAddress(sample), "\(sample)")
            #expect(!strict.permits(address), "\(sample) in \(block) is permitted")
            let url = address.isIPv4 ? "http://\(sample):9000/" : "http://[\(sample)]:9000/"
            #expect(throws: CallbackURLRefusal.self, "\(url) passed the check") { try strict.check(url) }
        }
    }

    /// The table is not broader than the registries: globally reachable unicast still passes.
    @Test(arguments: [
        "1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.32.0.1", "192.0.1.1", "192.88.98.255",
        "192.169.0.1", "198.20.0.1", "223.255.255.255", "192.31.196.1", "192.52.193.1", "192.175.48.1",
        "2000::1", "2001:200::1", "2001:4860:4860::8888", "2001:db7::1", "2001:db9::1", "2003::1", "2606:4700::1111",
        "2620:4f:8000::1", "2a00:1450:4001::1", "3ffe::1", "3fff:1000::1",
    ])
    func permitsGloballyReachableAddresses(sample: String) throws {
        #expect(strict.permits(try #require(IPAddress(sample))), "\(sample)")
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
