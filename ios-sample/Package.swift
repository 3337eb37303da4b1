// swift-tools-version:6.0
//
// The iOS sample's code, as a package so that its platform-independent part compiles and
// is tested on Linux (`scripts/test-swift.sh`):
//   * TributarySampleCore: configuration, the four actions, and the wiring of the network
//     monitor and the background flush, behind protocols; NWPathMonitor and UIKit
//     implementations compile only where those frameworks exist.
//   * TributarySampleUI: the SwiftUI screen (empty where SwiftUI/UIKit do not exist).
// The app itself (App/, with @main) is built by Xcode: see README.md.
import PackageDescription

let package = Package(
    name: "TributarySample",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "TributarySampleCore", targets: ["TributarySampleCore"]),
        .library(name: "TributarySampleUI", targets: ["TributarySampleUI"]),
    ],
    dependencies: [
        .package(name: "Tributary", path: "../bindings/swift"),
    ],
    targets: [
        .target(name: "TributarySampleCore", dependencies: [.product(name: "Tributary", package: "Tributary")]),
        .target(name: "TributarySampleUI", dependencies: ["TributarySampleCore"]),
        .testTarget(name: "TributarySampleCoreTests", dependencies: ["TributarySampleCore"]),
    ],
    swiftLanguageModes: [.v6]
)
