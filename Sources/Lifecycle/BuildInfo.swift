/// What was built: shown by `--version` and in `workfcgi_build_info`.
public enum BuildInfo {
    public static let version = "0.3.0"
}
