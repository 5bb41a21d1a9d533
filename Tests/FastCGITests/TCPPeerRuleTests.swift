import Config
import Testing

@testable import FastCGI

#if canImport(Glibc)
import Glibc
#endif

/// The decision on a TCP connection, before any byte is read: the address, then, for a peer on this machine,
/// the user that owns its socket, by the same rule as a unix socket peer's.
@Suite struct TCPPeerRuleTests {
    static let access = FastCGIServer.Access(
        group: nil, peers: [0, 33, 1000], addresses: FrontendAddresses([CIDR("127.0.0.0/8")!, CIDR("10.0.0.0/24")!, CIDR("::1/128")!]))
    static let failure = FastCGIServer.LookupFailure(lookup: "sock_diag", errno: EPROTONOSUPPORT)

    /// The verdict, and which kernel lookups it asked for.
    func verdict(
        _ peer: String, local: Result<Bool, FastCGIServer.LookupFailure> = .success(true), owner: FastCGIServer.LocalPeer
    ) -> (FastCGIServer.TCPVerdict, asked: [String]) {
        var asked: [String] = []
        let v = Self.access.tcpVerdict(
            peer: IPAddress(peer)!,
            isLocal: {
                asked.append("route")
                return local
            },
            owner: {
                asked.append("sock_diag")
                return owner
            })
        return (v, asked)
    }

    @Test func loopbackPeersAreTheirSocketsUser() {
        #expect(verdict("127.0.0.1", owner: .user(33)) == (.admit, ["sock_diag"]))
        #expect(verdict("127.0.0.5", owner: .user(0)).0 == .admit)
        #expect(verdict("::1", owner: .user(1000)).0 == .admit)
        #expect(verdict("127.0.0.1", owner: .user(65534)) == (.refuse(.localUser, .user(65534)), ["sock_diag"]))
        // A dual-stack socket's IPv4 peer is loopback too.
        #expect(verdict("::ffff:127.0.0.1", owner: .user(65534)).0 == .refuse(.localUser, .user(65534)))
    }

    /// Fail closed: a socket nobody holds (its uid reads 0 in time-wait), one gone, a kernel that does not answer.
    @Test func aLocalPeerThatCannotBeIdentifiedIsRefused() {
        #expect(verdict("127.0.0.1", owner: .unowned).0 == .refuse(.localUser, .unowned))
        #expect(verdict("127.0.0.1", owner: .gone).0 == .refuse(.localUser, .gone))
        #expect(verdict("127.0.0.1", owner: .lookupFailed(Self.failure)).0 == .refuse(.localUser, .lookupFailed(Self.failure)))
        #expect(verdict("10.0.0.5", local: .failure(Self.failure), owner: .user(0)) == (.refuse(.localUser, .lookupFailed(Self.failure)), ["route"]))
    }

    @Test func anotherMachinesPeerIsItsAddressOnly() {
        // This machine's own 10.0.0.5: its user decides.
        #expect(verdict("10.0.0.5", local: .success(true), owner: .user(65534)) == (.refuse(.localUser, .user(65534)), ["route", "sock_diag"]))
        #expect(verdict("10.0.0.5", local: .success(true), owner: .user(33)).0 == .admit)
        // Another machine's: nothing to look up.
        #expect(verdict("10.0.0.7", local: .success(false), owner: .unowned) == (.admit, ["route"]))
        // Outside the list: refused before asking the kernel anything.
        #expect(verdict("10.0.1.7", owner: .user(0)) == (.refuse(.address, nil), []))
        #expect(verdict("::2", owner: .user(0)) == (.refuse(.address, nil), []))
    }

    @Test func unixAndTCPPeersShareOneUserRule() {
        #expect(Self.access.admitsUser(33) && Self.access.admitsUser(0) && !Self.access.admitsUser(65534))
        #expect(FastCGIServer.Access(group: nil, peers: nil).admitsUser(65534), "no set: whoever can open the socket file")
    }
}
