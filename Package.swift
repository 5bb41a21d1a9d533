// swift-tools-version:6.0
import PackageDescription

// Dependencies are kept deliberately small: CI builds from a clean clone on 2 cores.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "workfcgi",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "workfcgi", targets: ["workfcgi"]),
        .executable(name: "deliveryd", targets: ["deliveryd"]),
        .executable(name: "loadgen", targets: ["loadgen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C shims: one module map and one header each.
        .systemLibrary(name: "CFastCGI", path: "Sources/CFastCGI"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        // libpq (Debian's libpq-dev), for the PostgreSQL store.
        .systemLibrary(name: "CPostgres", path: "Sources/CPostgres"),
        .target(name: "CSystem", path: "Sources/CSystem"),

        // Pure libraries.
        .target(name: "Config", swiftSettings: swiftSettings),
        .target(name: "Digest", dependencies: ["CCrypto"], swiftSettings: swiftSettings),
        // Always optimized: op sizes are calibrated in time, and debug builds are ~10x slower at loops (the
        // transform op serializes JSON, so the writer is part of what is calibrated).
        .target(name: "JSON", swiftSettings: swiftSettings + [.unsafeFlags(["-O"])]),
        .target(name: "WorkEngine", dependencies: ["Digest", "JSON"], swiftSettings: swiftSettings + [.unsafeFlags(["-O"])]),

        // I/O libraries.
        // How the daemons open and set up files, sockets and folders without following symlinks.
        .target(name: "LocalFiles", dependencies: ["CSystem"], swiftSettings: swiftSettings),
        .target(name: "Store", dependencies: ["CSQLite", "CPostgres", "CSystem", "Config", "Digest", "JSON", "LocalFiles", "WorkEngine"], swiftSettings: swiftSettings),
        .target(name: "Doorbell", dependencies: ["LocalFiles"], swiftSettings: swiftSettings),
        // The SSRF policy for callback URLs: the front end checks at accept time, deliveryd before every attempt.
        // It links libcurl only for curl_url, so its verdict is read with the client's own URL parser.
        .target(name: "CallbackPolicy", dependencies: ["CCurl", "Config"], swiftSettings: swiftSettings),
        // Handler programs: the registry of WORKFCGI_HANDLERS_DIR and the runner (posix_spawn, bounds, kill
        // schedule), handed to WorkEngine so /sync and deliveryd run them through the same entry point.
        .target(
            name: "Handlers", dependencies: ["CSystem", "Config", "JSON", "LocalFiles", "WorkEngine", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(name: "FastCGI", dependencies: ["CFastCGI", "CSystem", "Config", "JSON", "LocalFiles"], swiftSettings: swiftSettings),
        .target(
            name: "Delivery",
            dependencies: [
                "CCurl", "CSystem", "CallbackPolicy", "Config", "Digest", "JSON", "Store", "WorkEngine", "Doorbell", "LocalFiles",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "API",
            dependencies: [
                "JSON", "WorkEngine", "Store", "CallbackPolicy", "Digest", "Doorbell", "FastCGI", "Config", "Handlers",
                .product(name: "Prometheus", package: "swift-prometheus"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "Harness",
            dependencies: ["CCurl", "CSystem", .product(name: "FlyingFox", package: "FlyingFox")],
            swiftSettings: swiftSettings),

        // Process start-up shared by the daemons: command line frame, signals, logging, readiness, locks.
        .target(
            name: "Lifecycle",
            dependencies: ["CSystem", "Config", "JSON", "LocalFiles", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings, plugins: ["BuildRevision"]),
        .plugin(name: "BuildRevision", capability: .buildTool()),

        // Thin executables: read config, wire, run.
        .executableTarget(
            name: "workfcgi",
            dependencies: [
                "API", "CallbackPolicy", "Config", "Doorbell", "FastCGI", "Handlers", "Lifecycle", "Store", "WorkEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "deliveryd",
            dependencies: [
                "CallbackPolicy", "Config", "Delivery", "Doorbell", "Handlers", "Lifecycle", "Store", "WorkEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "loadgen",
            dependencies: [
                "CSystem", "Digest", "Harness", "Lifecycle",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings),

        .executableTarget(name: "workbench", dependencies: ["WorkEngine"], swiftSettings: swiftSettings),
        // libFuzzer targets (scripts/fuzz); a plain build makes corpus replayers of them.
        .target(name: "FuzzDriver", swiftSettings: swiftSettings),
        .executableTarget(name: "fuzz-request", dependencies: ["WorkEngine", "FastCGI", "FuzzDriver"], swiftSettings: swiftSettings),
        .executableTarget(name: "fuzz-callback-url", dependencies: ["CallbackPolicy", "FuzzDriver"], swiftSettings: swiftSettings),

        .testTarget(name: "JSONTests", dependencies: ["JSON"], swiftSettings: swiftSettings),
        .testTarget(name: "WorkEngineTests", dependencies: ["WorkEngine", "Digest", "JSON"], swiftSettings: swiftSettings),
        .testTarget(name: "CallbackPolicyTests", dependencies: ["CallbackPolicy"], swiftSettings: swiftSettings),
        // A JobStore in memory for the tests of deliveryd's engine (not linked into any product).
        .target(name: "MemoryStore", dependencies: ["JSON", "Store", "WorkEngine"], path: "Tests/MemoryStore", swiftSettings: swiftSettings),
        .testTarget(
            name: "DeliveryTests", dependencies: ["CallbackPolicy", "Delivery", "Digest", "MemoryStore", "Store", "WorkEngine", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .testTarget(name: "ConfigTests", dependencies: ["Config"], swiftSettings: swiftSettings),
        .testTarget(name: "FastCGITests", dependencies: ["Config", "FastCGI", "JSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "APITests", dependencies: ["API", "CallbackPolicy", "Config", "Doorbell", "FastCGI", "JSON", "Store", "WorkEngine"],
            swiftSettings: swiftSettings),
        .testTarget(name: "LoadGenTests", dependencies: ["loadgen"], swiftSettings: swiftSettings),
        .testTarget(name: "HostTests", dependencies: ["Lifecycle"], swiftSettings: swiftSettings),
        .testTarget(name: "HandlersTests", dependencies: ["Handlers", "Config", "JSON", "WorkEngine"], swiftSettings: swiftSettings),
        .testTarget(name: "LocalFilesTests", dependencies: ["LocalFiles"], swiftSettings: swiftSettings),
        .testTarget(name: "StoreTests", dependencies: ["Config", "Harness", "JSON", "Store", "WorkEngine"], swiftSettings: swiftSettings),
        .testTarget(name: "IntegrationTests", dependencies: ["Harness", "Delivery", "Store"], swiftSettings: swiftSettings),
    ]
)
