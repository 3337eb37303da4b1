import Foundation

extension DeviceContext {
    /// The details every platform can supply without UI frameworks: the app from the main
    /// bundle, the OS from `ProcessInfo`, the locale and the time zone. Apps on iOS add
    /// the device model and screen size (see the iOS sample's `DeviceInfo`).
    public static func current(bundle: Bundle = .main) -> DeviceContext {
        let info = bundle.infoDictionary ?? [:]
        let os = ProcessInfo.processInfo.operatingSystemVersion
        return DeviceContext(
            appName: info["CFBundleName"] as? String,
            appVersion: info["CFBundleShortVersionString"] as? String,
            appBuild: info["CFBundleVersion"] as? String,
            appNamespace: bundle.bundleIdentifier,
            deviceType: platformName.lowercased(),
            osName: platformName,
            osVersion: "\(os.majorVersion).\(os.minorVersion).\(os.patchVersion)",
            locale: Locale.current.identifier.replacingOccurrences(of: "_", with: "-"),
            timezone: TimeZone.current.identifier
        )
    }

    private static var platformName: String {
        #if os(iOS)
        "iOS"
        #elseif os(macOS)
        "macOS"
        #elseif os(tvOS)
        "tvOS"
        #elseif os(watchOS)
        "watchOS"
        #elseif os(Linux)
        "Linux"
        #else
        "unknown"
        #endif
    }
}
