import Foundation
#if canImport(Network)
import Network
#endif
#if canImport(UIKit)
import UIKit
#endif
#if canImport(BackgroundTasks)
import BackgroundTasks
#endif

// The Apple-only hooks. None of this is compiled on Linux (no Network, UIKit or
// BackgroundTasks there), and nothing here has been compiled or run without Xcode: the
// logic they feed (PlatformHooks, BackgroundWork) is tested on Linux.

extension TributaryOptions {
    /// Fills the hooks the app did not set with the platform's own (none on Linux).
    mutating func applyPlatformDefaults() {
        #if canImport(Network)
        if reachability == nil { reachability = PathMonitorReachability() }
        #endif
        #if canImport(UIKit) && !os(watchOS)
        if lifecycle == nil { lifecycle = UIApplicationLifecycle() }
        if contextProvider == nil { contextProvider = UIDeviceContextProvider() }
        #endif
        #if canImport(BackgroundTasks) && os(iOS)
        if uploadScheduler == nil { uploadScheduler = BackgroundTaskUploads() }
        #endif
    }
}

#if canImport(Network)
/// Online while `NWPathMonitor` reports a satisfied path.
public final class PathMonitorReachability: TributaryReachability, @unchecked Sendable {
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "dev.tributary.reachability")

    /// A monitor of every interface.
    public init() {}

    public func start(onChange: @escaping @Sendable (Bool) -> Void) {
        monitor.pathUpdateHandler = { path in onChange(path.status == .satisfied) }
        monitor.start(queue: queue)
    }

    public func stop() {
        monitor.cancel()
    }
}
#endif

#if canImport(UIKit) && !os(watchOS)
/// `UIApplication.didBecomeActive` / `didEnterBackground`; the background flush runs
/// inside `beginBackgroundTask`, ended exactly once (by the flush or the expiration,
/// whichever comes first: ``BackgroundWork``).
public final class UIApplicationLifecycle: TributaryLifecycle, @unchecked Sendable {
    private var observers: [NSObjectProtocol] = []

    /// Observes the default notification center.
    public init() {}

    public func start(
        onForeground: @escaping @Sendable () -> Void,
        onBackground: @escaping @Sendable (BackgroundWork) -> Void
    ) {
        let center = NotificationCenter.default
        observers.append(center.addObserver(
            forName: UIApplication.didBecomeActiveNotification, object: nil, queue: .main
        ) { _ in onForeground() })
        observers.append(center.addObserver(
            forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: .main
        ) { _ in
            MainActor.assumeIsolated {
                let app = UIApplication.shared
                let id = LockedValue(UIBackgroundTaskIdentifier.invalid)
                let work = BackgroundWork {
                    DispatchQueue.main.async {
                        let task = id.withLock { $0 }
                        if task != .invalid { UIApplication.shared.endBackgroundTask(task) }
                    }
                }
                let begun = app.beginBackgroundTask(withName: "Tributary flush") { work.end() }
                id.withLock { $0 = begun }
                onBackground(work)
            }
        })
    }

    public func stop() {
        observers.forEach(NotificationCenter.default.removeObserver)
        observers.removeAll()
    }
}

/// The context from `UIDevice`, `Bundle`, `Locale`, `TimeZone` and the main screen.
public final class UIDeviceContextProvider: TributaryContextProvider, @unchecked Sendable {
    /// Reads the main bundle and the current device.
    public init() {}

    public func collect() -> DeviceContext {
        let base = DeviceContext.current()
        let read: @MainActor () -> DeviceContext = {
            var context = base
            context.deviceManufacturer = "Apple"
            context.deviceModel = Self.modelIdentifier()
            context.deviceType = "ios"
            context.osName = UIDevice.current.systemName
            context.osVersion = UIDevice.current.systemVersion
            let bounds = UIScreen.main.bounds
            context.screenWidth = UInt32(max(bounds.width, 0))
            context.screenHeight = UInt32(max(bounds.height, 0))
            context.screenDensity = Double(UIScreen.main.scale)
            return context
        }
        if Thread.isMainThread {
            return MainActor.assumeIsolated { read() }
        }
        return DispatchQueue.main.sync { MainActor.assumeIsolated { read() } }
    }

    /// The hardware model, e.g. `iPhone15,2`.
    static func modelIdentifier() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
#endif

#if canImport(BackgroundTasks) && os(iOS)
/// Deferred uploads with `BGTaskScheduler`. Call ``register()`` once before the app
/// finishes launching, and list ``identifier`` under `BGTaskSchedulerPermittedIdentifiers`
/// in Info.plist.
public final class BackgroundTaskUploads: TributaryUploadScheduler, @unchecked Sendable {
    /// The task identifier to list in Info.plist.
    public static let identifier = "dev.tributary.upload"

    /// Uses ``identifier``.
    public init() {}

    /// Registers the launch handler; call it in `application(_:didFinishLaunchingWithOptions:)`.
    /// The task uploads through the client ``Tributary/setup(writeKey:endpoint:options:)`` made.
    public static func register() {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            let work = BackgroundWork { task.setTaskCompleted(success: true) }
            task.expirationHandler = { work.end() }
            DispatchQueue.global(qos: .utility).async {
                Tributary.shared?.flushBlocking(timeout: 25)
                work.end()
            }
        }
    }

    public func schedule() {
        let request = BGProcessingTaskRequest(identifier: Self.identifier)
        request.requiresNetworkConnectivity = true
        try? BGTaskScheduler.shared.submit(request)
    }

    public func cancel() {
        BGTaskScheduler.shared.cancel(taskRequestWithIdentifier: Self.identifier)
    }
}
#endif
