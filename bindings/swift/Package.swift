// swift-tools-version:6.0
//
// The Tributary Swift package: module `Tributary` (the generated UniFFI layer plus the
// idiomatic `Tributary` class) over the Rust core in the C module `TributaryFFI`.
//
// The generated files are not committed. Create them first:
//   * Linux / local development: `scripts/test-swift.sh` (builds the cdylib, generates
//     Sources/TributaryFFI and Sources/Tributary/Generated, runs `swift test`).
//   * Apple platforms: `scripts/build-xcframework.sh` (builds TributaryFFI.xcframework
//     here and the same generated sources).
import Foundation
import PackageDescription

let packageDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let environment = ProcessInfo.processInfo.environment

// With an XCFramework next to this file (Apple platforms), link the static Rust library
// from it. Otherwise link the host-built cdylib from TRIBUTARY_LIB_DIR (set by
// scripts/test-swift.sh), or the workspace's default debug build.
let xcframework = packageDir.appendingPathComponent("TributaryFFI.xcframework")
let useXCFramework = environment["TRIBUTARY_LIB_DIR"] == nil
    && FileManager.default.fileExists(atPath: xcframework.path)
let libDir = URL(
    fileURLWithPath: environment["TRIBUTARY_LIB_DIR"]
        ?? packageDir.appendingPathComponent("../../target/debug").path
).standardizedFileURL.path

let ffiTarget: Target = useXCFramework
    ? .binaryTarget(name: "TributaryFFI", path: "TributaryFFI.xcframework")
    : .systemLibrary(name: "TributaryFFI", path: "Sources/TributaryFFI")

// unsafeFlags are only accepted in a root or local (path) package, which is how this
// package is used on Linux. The XCFramework build needs none.
let rustLinkerSettings: [LinkerSetting] = useXCFramework
    ? [.linkedFramework("Security"), .linkedFramework("SystemConfiguration")]
    : [
        .linkedLibrary("tributary"),
        .unsafeFlags(["-L", libDir, "-Xlinker", "-rpath", "-Xlinker", libDir]),
    ]

let package = Package(
    name: "Tributary",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Tributary", targets: ["Tributary"]),
    ],
    targets: [
        ffiTarget,
        .target(
            name: "Tributary",
            dependencies: ["TributaryFFI"],
            path: "Sources/Tributary",
            linkerSettings: rustLinkerSettings
        ),
        // A separate process for the SIGKILL test (a test-only executable, not a product).
        .executableTarget(name: "TributaryCrashHelper", dependencies: ["Tributary"], path: "Sources/TributaryCrashHelper"),
        // zlib, to decompress the SDK's gzip request bodies in the test HTTP server.
        .systemLibrary(name: "CZlib", path: "Tests/CZlib"),
        .testTarget(
            name: "TributaryTests",
            dependencies: ["Tributary", "CZlib", "TributaryCrashHelper"],
            path: "Tests/TributaryTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
