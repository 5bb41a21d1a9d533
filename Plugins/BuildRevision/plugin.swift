import Foundation
import PackagePlugin

/// Writes `BuildRevision.swift` (the git revision of the checkout being built) before every build, so
/// `--version` and `workfcgi_build_info` name the exact commit. The file is rewritten only when the
/// revision changes, so an unchanged tree recompiles nothing. Outside a git checkout: "unknown".
@main
struct BuildRevision: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildRevision.swift")
        let script = """
            rev=$(git -C "$1" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
            text="/// Generated at build time by Plugins/BuildRevision.
            let buildRevision = \\"$rev\\""
            [ -f "$2" ] && [ "$(cat "$2")" = "$text" ] || printf '%s\\n' "$text" > "$2"
            """
        return [
            .prebuildCommand(
                displayName: "git revision for --version", executable: URL(filePath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: context.pluginWorkDirectoryURL)
        ]
    }
}
