import Testing

@testable import Config

@Suite struct ListenAddressTests {
    @Test func unixPathsStayUnixSockets() throws {
        for path in ["run/api.sock", "/run/workfcgi/api.sock", "api.sock", "/tmp/odd:name.sock", "./a:1"] {
            #expect(try ListenAddress(parsing: path) == .unix(path: path), "\(path)")
        }
    }

    @Test func tcpAddresses() throws {
        #expect(try ListenAddress(parsing: "127.0.0.11:9000") == .tcp(host: IPAddress("127.0.0.11")!, port: 9000))
        #expect(try ListenAddress(parsing: "0.0.0.0:1") == .tcp(host: IPAddress("0.0.0.0")!, port: 1))
        #expect(try ListenAddress(parsing: "[::1]:65535") == .tcp(host: IPAddress("::1")!, port: 65535))
        #expect(try ListenAddress(parsing: "[fd00::5]:9000").description == "[fd00::5]:9000")
        #expect(try ListenAddress(parsing: "10.0.0.5:9000").description == "10.0.0.5:9000")
        #expect(try ListenAddress(parsing: "10.0.0.5:9000").isTCP)
        #expect(try !ListenAddress(parsing: "run/api.sock").isTCP)
    }

    @Test(arguments: [
        "localhost:9000", "example.com:9000", "::1:9000", "[127.0.0.1]:9000", "[::1]9000", "[::1", "10.0.0.5:", "10.0.0.5:0",
        "10.0.0.5:65536", "10.0.0.5:09000", "10.0.0.5:+90", "10.0.0.5:９０", "10.0.0.256:9000", ":9000", "10.0.0.5:90:1",
    ])
    func badValuesAreRefused(_ text: String) {
        #expect(throws: ListenAddressError.self, "\(text)") { try ListenAddress(parsing: text) }
    }

    @Test func settingsNameTheBadVariable() throws {
        let s = try Settings(environment: ["WORKFCGI_API_SOCKET": "127.0.0.11:9001", "WORKFCGI_SYNC_SOCKET": "[::1]:9002"])
        #expect(s.apiListen == .tcp(host: IPAddress("127.0.0.11")!, port: 9001))
        #expect(s.syncListen == .tcp(host: IPAddress("::1")!, port: 9002))
        #expect(try Settings(environment: [:]).apiListen == .unix(path: "run/api.sock"))
        do {
            _ = try Settings(environment: ["WORKFCGI_SYNC_SOCKET": "localhost:9000"])
            Issue.record("a host name was accepted")
        } catch {
            #expect(error.variable == "WORKFCGI_SYNC_SOCKET")
            #expect(error.message.contains("localhost"))
        }
        do {
            _ = try Settings(environment: ["WORKFCGI_FRONTEND_ADDRESSES": "10.0.0.0/8, 10.1.0.0/99"])
            Issue.record("a bad CIDR was accepted")
        } catch {
            #expect(error.variable == "WORKFCGI_FRONTEND_ADDRESSES")
            #expect(error.message.contains("10.1.0.0/99"))
        }
    }

    @Test func frontendAddressesDefaultToLoopback() throws {
        let s = try Settings(environment: [:])
        #expect(s.frontendAddresses == FrontendAddresses.loopbackOnly)
        #expect(s.frontendAddresses.admits(IPAddress("127.0.0.1")!))
        #expect(s.frontendAddresses.admits(IPAddress("127.9.9.9")!))
        #expect(s.frontendAddresses.admits(IPAddress("::1")!))
        #expect(!s.frontendAddresses.admits(IPAddress("10.0.0.5")!))
        #expect(!s.frontendAddresses.admits(IPAddress("::2")!))
    }

    @Test func frontendAddressesMatchRangesAndMappedIPv4() throws {
        let s = try Settings(environment: ["WORKFCGI_FRONTEND_ADDRESSES": "10.0.1.0/24, fd00::/8, 192.168.5.7"])
        let allowed = s.frontendAddresses
        #expect(allowed.admits(IPAddress("10.0.1.200")!))
        #expect(!allowed.admits(IPAddress("10.0.2.1")!))
        #expect(allowed.admits(IPAddress("192.168.5.7")!))
        #expect(!allowed.admits(IPAddress("192.168.5.8")!))
        #expect(allowed.admits(IPAddress("fd12::1")!))
        #expect(!allowed.admits(IPAddress("fe80::1")!))
        // A dual-stack [::] socket sees IPv4 peers as ::ffff:a.b.c.d.
        #expect(allowed.admits(IPAddress("::ffff:10.0.1.9")!))
        #expect(!allowed.admits(IPAddress("::ffff:10.0.2.9")!))
        #expect(!allowed.admits(IPAddress("127.0.0.1")!), "setting the list replaces loopback")
        #expect(IPAddress("::ffff:1.2.3.4")!.unmappedIPv4 == IPAddress("1.2.3.4"))
        #expect(IPAddress("::1")!.unmappedIPv4 == nil)
    }
}

@Suite struct ListenAddressRuleTests {
    @Test func cidrsAreTheNetworkFormOnly() throws {
        for bad in ["10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/ 8", "10.0.0.0/8 ", "10.0.0.0/0008", "::/+0", "::1/0128"] {
            #expect(throws: CIDRError.self, "\(bad)") { try CIDR(parsing: bad) }
        }
        do {
            _ = try CIDR(parsing: "10.0.0.5/8")
            Issue.record("host bits were accepted")
        } catch {
            #expect(error.message.contains("10.0.0.0/8") && error.message.contains("10.0.0.5/32"), "\(error.message)")
        }
        #expect(throws: CIDRError.self) { try CIDR(parsing: "fd00::1/8") }
        #expect(throws: CIDRError.self) { try CIDR(parsing: "192.168.1.1/24") }
        #expect(try CIDR(parsing: "10.0.0.0/8") == CIDR("10.0.0.0/8"))
        #expect(try CIDR(parsing: "10.0.0.5").prefix == 32)
        #expect(try CIDR(parsing: "0.0.0.0/0").prefix == 0)
        #expect(try CIDR(parsing: "fc00::/7").description == "fc00::/7")
        do {
            _ = try Settings(environment: ["WORKFCGI_FRONTEND_ADDRESSES": "10.0.0.5/8"])
            Issue.record("host bits were accepted")
        } catch {
            #expect(error.variable == "WORKFCGI_FRONTEND_ADDRESSES" && error.message.contains("10.0.0.0/8"), "\(error)")
        }
        // The operator and callback lists are read by the same rule.
        #expect(throws: ConfigError.self) { try CIDR.list(["127.0.0.1/+32"], variable: "WORKFCGI_OPERATOR_ADDRESSES") }
    }

    /// `::ffff:10.0.0.0/104` is 10.0.0.0/8: peers are matched as IPv4 addresses, so the mapped form matched none.
    @Test func mappedRangesAreTheirIPv4Ranges() throws {
        #expect(try CIDR(parsing: "::ffff:10.0.0.0/104") == CIDR("10.0.0.0/8"))
        #expect(try CIDR(parsing: "::ffff:10.0.0.7") == CIDR("10.0.0.7/32"))
        #expect(throws: CIDRError.self) { try CIDR(parsing: "::ffff:10.0.0.7/104") }
        let s = try Settings(environment: ["WORKFCGI_FRONTEND_ADDRESSES": "::ffff:10.0.0.0/104"])
        #expect(s.frontendAddresses.admits(IPAddress("10.1.2.3")!))
        #expect(s.frontendAddresses.admits(IPAddress("::ffff:10.1.2.3")!))
        #expect(!s.frontendAddresses.admits(IPAddress("11.0.0.1")!))
    }

    @Test func theTwoPoolsNeedTwoSockets() throws {
        for (sync, api) in [
            ("127.0.0.11:9000", "127.0.0.11:9000"), ("0.0.0.0:9000", "127.0.0.11:9000"), ("[::]:9000", "10.0.0.5:9000"),
            ("[::1]:9000", "[::]:9000"), ("run/x.sock", "run/x.sock"), ("run/x.sock", "./run//x.sock"), ("/run/w/a.sock", "/run/w/./a.sock"),
        ] {
            do {
                _ = try Settings(environment: ["WORKFCGI_SYNC_SOCKET": sync, "WORKFCGI_API_SOCKET": api])
                Issue.record("\(sync) and \(api) were accepted")
            } catch {
                #expect(error.variable == "WORKFCGI_SYNC_SOCKET" && error.message.contains("WORKFCGI_API_SOCKET"), "\(error)")
            }
        }
        for (sync, api) in [("127.0.0.11:9001", "127.0.0.11:9000"), ("127.0.0.12:9000", "127.0.0.11:9000"), ("0.0.0.0:9000", "[::1]:9000")] {
            #expect(throws: Never.self) { try Settings(environment: ["WORKFCGI_SYNC_SOCKET": sync, "WORKFCGI_API_SOCKET": api]) }
        }
        do {
            _ = try Settings(environment: ["WORKFCGI_API_SOCKET": "run/deliveryd.sock"])
            Issue.record("the doorbell's path was accepted")
        } catch {
            #expect(error.variable == "WORKFCGI_API_SOCKET" && error.message.contains("WORKFCGI_DOORBELL_SOCKET"), "\(error)")
        }
    }

    @Test func loopbackAddresses() {
        for a in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] { #expect(IPAddress(a)!.isLoopback, "\(a)") }
        for a in ["10.0.0.1", "::", "::2", "::ffff:10.0.0.1", "128.0.0.1"] { #expect(!IPAddress(a)!.isLoopback, "\(a)") }
    }
}
