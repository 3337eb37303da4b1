import Foundation

/// Reports whether the device has a usable network path. On iOS this is
/// ``PathMonitorReachability`` (NWPathMonitor); tests drive their own.
public protocol NetworkReachability: AnyObject, Sendable {
    /// Starts reporting; `onChange` is called with the current state and on every change,
    /// on any thread.
    func start(onChange: @escaping @Sendable (Bool) -> Void)
    func stop()
}

/// Opaque handle of a running background task.
public struct BackgroundTaskToken: Hashable, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
}

/// Asks the OS for time to finish work after the app leaves the foreground. On iOS this is
/// ``UIKitBackgroundTasks`` (`beginBackgroundTask` / `endBackgroundTask`).
public protocol BackgroundTaskRunner: Sendable {
    /// Begins a task; the OS calls `expiration` when the time is up, and the task must
    /// then be ended at once. Returns nil when the OS refuses.
    func begin(name: String, expiration: @escaping @Sendable () -> Void) -> BackgroundTaskToken?
    /// Ends a task begun with `begin`.
    func end(_ token: BackgroundTaskToken)
}

#if canImport(Network)
import Network

/// ``NetworkReachability`` backed by `NWPathMonitor`.
public final class PathMonitorReachability: NetworkReachability, @unchecked Sendable {
    // NWPathMonitor is thread-safe but not annotated; it is only touched through its own queue.
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "dev.tributary.sample.path-monitor")

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
import UIKit

/// ``BackgroundTaskRunner`` backed by `UIApplication.beginBackgroundTask`.
public struct UIKitBackgroundTasks: BackgroundTaskRunner {
    public init() {}

    public func begin(name: String, expiration: @escaping @Sendable () -> Void) -> BackgroundTaskToken? {
        // UIApplication is main-actor isolated; didEnterBackground arrives on the main thread.
        let id = MainActor.assumeIsolated {
            UIApplication.shared.beginBackgroundTask(withName: name, expirationHandler: expiration)
        }
        return id == .invalid ? nil : BackgroundTaskToken(rawValue: id.rawValue)
    }

    public func end(_ token: BackgroundTaskToken) {
        let id = UIBackgroundTaskIdentifier(rawValue: token.rawValue)
        if Thread.isMainThread {
            MainActor.assumeIsolated { UIApplication.shared.endBackgroundTask(id) }
        } else {
            Task { @MainActor in UIApplication.shared.endBackgroundTask(id) }
        }
    }
}
#endif
