import Testing

@testable import Lifecycle

/// Which pid holds a service's instance lock, read from /proc/locks' text (the decision behind "already runs
/// as the installed service"); the root-only LifecycleTests case reads a real /proc/locks.
@Suite struct FlockHolderTests {
    /// glibc's makedev: minor's low byte, major's low 12 bits at 8, minor's rest at 20, major's rest at 44.
    static func makedev(_ major: UInt64, _ minor: UInt64) -> UInt64 {
        (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12) | ((major & ~0xfff) << 32)
    }

    static let locks = """
        1: POSIX  ADVISORY  WRITE 100 08:01:77 0 EOF
        2: FLOCK  ADVISORY  READ 101 08:01:77 0 EOF
        3: -> FLOCK  ADVISORY  WRITE 102 08:01:77 0 EOF
        4: FLOCK  ADVISORY  WRITE 4242 08:01:77 0 EOF
        5: FLOCK  ADVISORY  WRITE 4343 00:12c:77 0 EOF
        6: FLOCK  ADVISORY  WRITE 4444 1000:01:77 0 EOF
        """

    @Test func theExclusiveFlockHolderOfThatFileIsFound() {
        // Not the POSIX lock, the shared one or the waiter on the same file: the one holding it exclusively.
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(8, 1), locks: Self.locks) == 4242)
        // Minor numbers past 255 (tmpfs, overlay) and majors past 4095 decode like glibc's minor() and major().
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(0, 0x12c), locks: Self.locks) == 4343)
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(0x1000, 1), locks: Self.locks) == 4444)
    }

    @Test func noHolderIsNoPid() {
        #expect(InstalledService.flockHolder(inode: 78, device: Self.makedev(8, 1), locks: Self.locks) == nil, "another inode")
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(8, 2), locks: Self.locks) == nil, "another device")
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(8, 1), locks: "") == nil)
        #expect(InstalledService.flockHolder(inode: 77, device: Self.makedev(8, 1), locks: "garbage\n4: FLOCK\n:::") == nil)
    }
}
