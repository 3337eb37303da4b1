import Foundation

/// Reports whether the device can reach the network (Apple platforms: `NWPathMonitor`).
public protocol TributaryReachability: AnyObject, Sendable {
    /// Starts reporting: `onChange` gets the current state, then every change.
    func start(onChange: @escaping @Sendable (Bool) -> Void)
    /// Stops reporting.
    func stop()
}

/// Reports the app coming to the foreground and going to the background (iOS:
/// `UIApplication` notifications).
public protocol TributaryLifecycle: AnyObject, Sendable {
    /// Starts reporting to the two handlers. `onBackground` gets a ``BackgroundWork`` to
    /// run the flush in (iOS: inside `beginBackgroundTask`).
    func start(onForeground: @escaping @Sendable () -> Void, onBackground: @escaping @Sendable (BackgroundWork) -> Void)
    /// Stops reporting.
    func stop()
}

/// Schedules an upload that runs later, even after the app was suspended (iOS:
/// `BGTaskScheduler`).
public protocol TributaryUploadScheduler: AnyObject, Sendable {
    /// Schedules one deferred upload; replaces a pending one.
    func schedule()
    /// Cancels the pending upload, if any.
    func cancel()
}

/// Where the automatic context comes from (iOS: `UIDevice`, `Bundle`, `Locale`,
/// `TimeZone`, the screen).
public protocol TributaryContextProvider: AnyObject, Sendable {
    /// The current details.
    func collect() -> DeviceContext
}

/// Time the system grants to finish work after the app went to the background. The
/// work is ended exactly once: when it completes, or when the system's time runs out,
/// whichever comes first (`UIApplication.beginBackgroundTask`'s contract).
public final class BackgroundWork: @unchecked Sendable {
    private let lock = NSLock()
    private var ended = false
    private let endTask: @Sendable () -> Void

    /// `endTask` ends the system's background task; it is called exactly once.
    public init(endTask: @escaping @Sendable () -> Void) {
        self.endTask = endTask
    }

    /// Ends the task if it has not been ended; later calls do nothing.
    public func end() {
        let first = lock.withLock { () -> Bool in
            defer { ended = true }
            return !ended
        }
        if first { endTask() }
    }

    /// Whether ``end()`` has run.
    public var isEnded: Bool { lock.withLock { ended } }
}

/// The settings of ``Tributary/setup(writeKey:endpoint:options:)``; the defaults suit most apps.
public struct TributaryOptions: Sendable {
    /// Where the queue lives; `nil`: `Application Support/tributary`.
    public var storageDirectory: URL?
    /// Upload once this many events are queued.
    public var flushAt: UInt32 = 20
    /// Upload at least this often while events are queued (seconds).
    public var flushInterval: TimeInterval = 30
    /// A session ends after this long in the background (seconds).
    public var sessionTimeout: TimeInterval = 30 * 60
    /// Record Segment's `Application Installed`, `Updated`, `Opened` and `Backgrounded`.
    public var trackLifecycleEvents = false
    /// How long the background flush may take before the task ends (seconds).
    public var backgroundFlushTimeout: TimeInterval = 20
    /// Receives the core's log; `nil` for silence.
    public var logger: (any TributaryLogger)? = SystemLogger()
    /// Sends the uploads; ``URLSessionTransport`` by default.
    public var transport: any TributaryTransport = URLSessionTransport()
    /// The hooks; `nil` fields use the platform's own (none on Linux).
    public var reachability: (any TributaryReachability)?
    /// See ``TributaryLifecycle``.
    public var lifecycle: (any TributaryLifecycle)?
    /// See ``TributaryUploadScheduler``.
    public var uploadScheduler: (any TributaryUploadScheduler)?
    /// See ``TributaryContextProvider``.
    public var contextProvider: (any TributaryContextProvider)?

    /// Every default.
    public init() {}
}

/// Wires the hooks to a client. Plain logic over the protocols: it runs on Linux.
final class PlatformHooks: @unchecked Sendable {
    private weak var tributary: Tributary?
    private let options: TributaryOptions
    private let storage: URL
    private let lock = NSLock()
    private var foregroundedOnce = false
    /// The lifecycle work, in order and off the caller's (main) thread: the core's install
    /// check may wait for its state file, and `Application Installed` comes before `Opened`.
    private let queue = DispatchQueue(label: "dev.tributary.hooks")

    /// Waits for the lifecycle work queued so far.
    func awaitIdle() {
        queue.sync {}
    }

    init(tributary: Tributary, options: TributaryOptions, storage: URL) {
        self.tributary = tributary
        self.options = options
        self.storage = storage
    }

    func start() {
        refreshContext()
        queue.async { self.reportLaunch() }
        options.reachability?.start { [weak self] online in
            self?.tributary?.setNetworkAvailable(online)
            self?.refreshContext()
        }
        options.lifecycle?.start(
            onForeground: { [weak self] in self?.foreground() },
            onBackground: { [weak self] work in
                guard let self else { work.end(); return }
                self.background(work)
            }
        )
    }

    func stop() {
        options.reachability?.stop()
        options.lifecycle?.stop()
    }

    func refreshContext() {
        guard let provider = options.contextProvider, let tributary else { return }
        tributary.setContext(provider.collect())
    }

    func foreground() {
        // The session first, on the caller's thread: events tracked right after belong to it.
        tributary?.appForegrounded()
        queue.async { self.foregroundWork() }
    }

    private func foregroundWork() {
        guard let tributary else { return }
        refreshContext()
        options.uploadScheduler?.cancel()
        let again = lock.withLock { () -> Bool in
            defer { foregroundedOnce = true }
            return foregroundedOnce
        }
        if options.trackLifecycleEvents {
            tributary.track("Application Opened", properties: ["from_background": again])
        }
    }

    /// Records, then flushes inside `work` on a utility queue, ending it exactly once.
    func background(_ work: BackgroundWork) {
        queue.async { self.backgroundWork(work) }
    }

    private func backgroundWork(_ work: BackgroundWork) {
        guard let tributary else { work.end(); return }
        if options.trackLifecycleEvents { tributary.track("Application Backgrounded") }
        tributary.appBackgrounded()
        options.uploadScheduler?.schedule()
        let timeout = options.backgroundFlushTimeout
        DispatchQueue.global(qos: .utility).async {
            tributary.flushBlocking(timeout: timeout)
            work.end()
        }
    }

    /// Reports the app's version to the core, which tells an install from an update
    /// (against its state file) and records `Application Installed`/`Updated` when
    /// lifecycle events are on. On this queue: the core may wait briefly for its state file.
    private func reportLaunch() {
        guard let tributary, let context = options.contextProvider?.collect(),
              let version = context.appVersion else { return }
        tributary.appLaunched(version: version, build: context.appBuild, trackLifecycleEvents: options.trackLifecycleEvents)
    }
}

extension Tributary {
    /// Creates the app's client and registers the platform hooks: reachability
    /// (`NWPathMonitor`), the app lifecycle (sessions, a flush inside
    /// `beginBackgroundTask`, a `BGTaskScheduler` upload, optional lifecycle events) and
    /// the automatic context. Call it once, early (e.g. in the app delegate or the
    /// `App` initializer).
    ///
    /// - Throws: ``TributaryError`` for a configuration that cannot work (an empty write
    ///   key, a non-http endpoint).
    public static func setup(writeKey: String, endpoint: String, options: TributaryOptions = TributaryOptions()) throws -> Tributary {
        var options = options
        let storage = try options.storageDirectory ?? Tributary.defaultStorageDirectory()
        var config = Tributary.configuration(endpoint: endpoint, writeKey: writeKey, storageDirectory: storage)
        config.flushAt = max(options.flushAt, 1)
        config.flushIntervalMs = max(Tributary.milliseconds(options.flushInterval), 1)
        config.sessionTimeoutMs = max(Tributary.milliseconds(options.sessionTimeout), 1)
        options.applyPlatformDefaults()
        let tributary = try Tributary(config: config, logger: options.logger, transport: options.transport)
        let hooks = PlatformHooks(tributary: tributary, options: options, storage: storage)
        tributary.hooks.withLock { $0 = hooks }
        hooks.start()
        current.withLock { $0 = tributary }
        return tributary
    }

    /// The client the last ``setup(writeKey:endpoint:options:)`` made, for work the
    /// system starts on its own (the `BGTaskScheduler` upload).
    public static var shared: Tributary? { current.withLock { $0 } }
}

private let current = LockedValue<Tributary?>(nil)

/// A value behind a lock, for state shared with the core's threads.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    @discardableResult
    func withLock<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}
