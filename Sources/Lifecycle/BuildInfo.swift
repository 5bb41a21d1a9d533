/// What was built: shown by `--version` and in `workfcgi_build_info`.
public enum BuildInfo {
    public static let version = "0.3.0"
    /// `git describe` of the checkout at build time (Plugins/BuildRevision), "-dirty" with local changes.
    public static let revision = buildRevision
    public static var versionLine: String { "\(version) (\(revision))" }
}
