import Foundation

/// The object an app uses to record analytics events.
///
/// A thin layer over the Rust core (`Client`): recording methods validate and build the
/// event, hand it to the core's background writer and return; they never wait for disk
/// or network I/O. Every event recorded is delivered exactly once to the collector,
/// through offline periods, app kills and retries.
///
/// ```swift
/// let tributary = try Tributary(
///     endpoint: "https://ingest.example.com",
///     writeKey: "WRITE_KEY",
///     storageDirectory: Tributary.defaultStorageDirectory()
/// )
/// tributary.track("Signed Up", properties: ["plan": "pro"])
/// ```
///
/// All methods are safe to call from any thread. Errors are ``TributaryError`` values
/// whose ``TributaryError/message`` comes from the Rust core and says what to do.
public final class Tributary: Sendable {
    /// The generated UniFFI object; `Client` is `@unchecked Sendable` because the
    /// Rust object behind it is `Send + Sync`.
    private let client: Client
    /// The logger given to ``init(config:logger:)``, for errors this layer itself reports.
    private let logger: (any TributaryLogger)?
    /// The hooks ``setup(writeKey:endpoint:options:)`` registered, stopped by ``shutdown(timeout:)``.
    let hooks = LockedValue<PlatformHooks?>(nil)

    /// The `library_name` this layer reports in `context.library.name`.
    public static let libraryName = "tributary-swift"
    /// The version reported in `context.library.version`.
    public static let libraryVersion = "0.1.0"

    /// Opens (or creates) the queue in `config.storageDir` and starts the core's
    /// background threads.
    ///
    /// - Parameters:
    ///   - config: the full configuration; see ``Tributary/configuration(endpoint:writeKey:storageDirectory:)``
    ///     for one with every default and this library's name.
    ///   - logger: receives the core's log messages, from its background threads.
    ///     The default routes them to os_log on Apple platforms and to standard output
    ///     elsewhere; pass `nil` for silence.
    /// - Throws: ``TributaryError/invalidConfig(message:)`` naming the bad field.
    ///   - transport: sends the core's requests; ``URLSessionTransport`` by default. The
    ///     core builds each request and classifies each answer; the transport only moves bytes.
    public init(
        config: TributaryConfig,
        logger: (any TributaryLogger)? = SystemLogger(),
        transport: any TributaryTransport = URLSessionTransport()
    ) throws {
        client = try TributaryError.mapping {
            try Client.withTransport(config: config, logger: logger, transport: TransportAdapter(transport))
        }
        self.logger = logger
    }

    /// Opens a client with every default setting.
    ///
    /// - Parameter storageDirectory: a directory this client owns; it is created if missing.
    public convenience init(
        endpoint: String,
        writeKey: String,
        storageDirectory: URL,
        logger: (any TributaryLogger)? = SystemLogger()
    ) throws {
        try self.init(
            config: Self.configuration(endpoint: endpoint, writeKey: writeKey, storageDirectory: storageDirectory),
            logger: logger
        )
    }

    /// A configuration with the core's defaults that reports this Swift library's name
    /// and version. Change fields (for example `flushAt`) before passing it to ``init(config:logger:)``.
    public static func configuration(endpoint: String, writeKey: String, storageDirectory: URL) -> TributaryConfig {
        TributaryConfig(
            endpoint: endpoint,
            writeKey: writeKey,
            storageDir: storageDirectory.path,
            libraryName: libraryName,
            libraryVersion: libraryVersion
        )
    }

    /// `Application Support/tributary` (created if missing), the usual place for the queue.
    /// On Linux this is under `~/.local/share`.
    public static func defaultStorageDirectory() throws -> URL {
        let base = try FileManager.default.url(
            for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true
        )
        let dir = base.appendingPathComponent("tributary", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: Recording

    /// Records a `track` event. It never throws and never crashes: analytics must not
    /// interrupt the app.
    ///
    /// - Parameter properties: JSON-compatible values: `String`, `Bool`, integers,
    ///   floating-point numbers, `NSNull` or `nil`, arrays and `[String: Any]`
    ///   dictionaries, nested freely. `Date` becomes an ISO 8601 string and `URL` its
    ///   absolute string; NaN and infinities become `null`, and any other value its
    ///   `String(describing:)` (see `JSONProperties`).
    ///
    /// An event the core refuses (larger than `maxEventBytes`, or recorded after
    /// ``shutdown(timeout:)``) is dropped, logged and counted in ``stats``.
    ///
    /// The per-call options, all optional: `timestamp` for an event that happened
    /// earlier than it is recorded, `context` keys that replace the event's own
    /// top-level `context` keys, and `integrations` (e.g. `["All": false, "Mixpanel": true]`).
    public func track(
        _ name: String, properties: [String: Any] = [:],
        timestamp: Date? = nil, context: [String: Any]? = nil, integrations: [String: Any]? = nil
    ) {
        let options = Self.options(timestamp, context, integrations)
        record("track") {
            try client.trackWithOptions(name: name, propertiesJson: JSONProperties.encode(properties), options: options)
        }
    }

    /// Records an `identify` event and remembers `userId` for later events; `traits` are
    /// merged into the stored traits (persisted, sent in every event's `context.traits`).
    /// Never throws. Options as in `track`.
    public func identify(
        _ userId: String, traits: [String: Any] = [:],
        timestamp: Date? = nil, context: [String: Any]? = nil, integrations: [String: Any]? = nil
    ) {
        let options = Self.options(timestamp, context, integrations)
        record("identify") {
            try client.identifyWithOptions(userId: userId, traitsJson: JSONProperties.encode(traits), options: options)
        }
    }

    /// Records a `screen` event. Never throws. Options as in `track`.
    public func screen(
        _ name: String, properties: [String: Any] = [:],
        timestamp: Date? = nil, context: [String: Any]? = nil, integrations: [String: Any]? = nil
    ) {
        let options = Self.options(timestamp, context, integrations)
        record("screen") {
            try client.screenWithOptions(name: name, propertiesJson: JSONProperties.encode(properties), options: options)
        }
    }

    /// Records a `page` event (web views, hybrid apps; native screens use `screen`).
    /// Never throws. Options as in `track`.
    public func page(
        _ name: String, properties: [String: Any] = [:],
        timestamp: Date? = nil, context: [String: Any]? = nil, integrations: [String: Any]? = nil
    ) {
        let options = Self.options(timestamp, context, integrations)
        record("page") {
            try client.pageWithOptions(name: name, propertiesJson: JSONProperties.encode(properties), options: options)
        }
    }

    /// Records a `group` event. Never throws. Options as in `track`.
    public func group(
        _ groupId: String, traits: [String: Any] = [:],
        timestamp: Date? = nil, context: [String: Any]? = nil, integrations: [String: Any]? = nil
    ) {
        let options = Self.options(timestamp, context, integrations)
        record("group") {
            try client.groupWithOptions(groupId: groupId, traitsJson: JSONProperties.encode(traits), options: options)
        }
    }

    /// The core's per-call options from Swift values.
    static func options(_ timestamp: Date?, _ context: [String: Any]?, _ integrations: [String: Any]?) -> EventOptions {
        EventOptions(
            timestampMs: timestamp.flatMap { date in
                let ms = (date.timeIntervalSince1970 * 1000).rounded()
                return ms.isFinite && abs(ms) < 9.0e15 ? Int64(ms) : nil
            },
            contextJson: context.map(JSONProperties.encode),
            integrationsJson: integrations.map(JSONProperties.encode)
        )
    }

    /// Records an `alias` event from the current id to `newId`, which becomes the user id.
    /// Never throws.
    public func alias(_ newId: String) {
        record("alias") { try client.alias(newId: newId) }
    }

    // MARK: Super-properties, traits and sessions

    /// Adds super-properties, merged into the properties of every later `track`, `screen`
    /// and `page` (a property the call passes wins), and persisted. Never throws.
    public func register(_ properties: [String: Any]) {
        record("register") { try client.register(propertiesJson: JSONProperties.encode(properties)) }
    }

    /// Removes one super-property (persisted).
    public func unregister(_ key: String) {
        client.unregister(key: key)
    }

    /// The registered super-properties, as JSON object text.
    public var superPropertiesJSON: String { client.superProperties() }

    /// The traits merged from every ``identify(_:traits:)`` since the last ``reset()``,
    /// as JSON object text.
    public var traitsJSON: String { client.traits() }

    /// The current session id: the session's start in milliseconds since 1970, sent in
    /// every event's `context.sessionId`. A session ends after `sessionTimeoutMs`
    /// (30 minutes) in the background.
    public var sessionId: Int64 { client.sessionId() }

    /// Reports that the app came to the foreground.
    public func appForegrounded() {
        client.appForegrounded()
    }

    /// Reports that the app went to the background; the session timeout counts from now.
    public func appBackgrounded() {
        client.appBackgrounded()
    }

    /// Reports the app's version at launch to the core, which records `Application
    /// Installed` or `Application Updated` (when `trackLifecycleEvents`) against the
    /// version in its state file. It may wait up to 2 s for that file: the setup calls it
    /// on its lifecycle queue, never on the main thread.
    func appLaunched(version: String, build: String?, trackLifecycleEvents: Bool) {
        client.appLaunched(version: version, build: build, trackLifecycleEvents: trackLifecycleEvents)
    }

    /// Runs one recording call without letting an error reach the app. The core has
    /// already logged and counted what it refused (a ``TributaryError``); anything else
    /// is a bug, reported to the logger here.
    private func record(_ call: String, _ body: () throws -> Void) {
        do {
            try body()
        } catch is FfiTributaryError {
            // Logged and counted in Stats by the core.
        } catch {
            logger?.log(level: .error, message: "\(call) dropped an event after an internal error: \(error)")
        }
    }

    // MARK: Delivery

    /// Waits up to `timeout` seconds for the queue database to be open and says whether
    /// it is. The initializer does not open it (no disk I/O on the caller's thread beyond
    /// the directory lock and a small consent file); until it is open, recorded events
    /// wait in memory and ``stats`` shows no queued events. A storage error (for example
    /// data protection before the first unlock) is reported to the logger and in
    /// `Stats.lastError`, and retried in the background. Do not call it on the main thread.
    public func awaitReady(timeout: TimeInterval) -> Bool {
        client.awaitReady(timeoutMs: Self.milliseconds(timeout))
    }

    /// Asks for an upload soon and returns at once.
    public func flush() {
        client.flush()
    }

    /// Blocks the calling thread until every event recorded before the call is durable
    /// and then delivered, until delivery is impossible (offline, unauthorized), or until
    /// `timeout` seconds pass. Do not call it on the main thread; use it in background
    /// tasks (see the iOS sample) or tests.
    @discardableResult
    public func flushBlocking(timeout: TimeInterval) -> FlushResult {
        client.flushBlocking(timeoutMs: Self.milliseconds(timeout))
    }

    /// The same as ``flushBlocking(timeout:)`` for Swift concurrency: the wait happens on
    /// a Dispatch worker thread, never on the caller's (or a cooperative pool) thread.
    @discardableResult
    public func flush(timeout: TimeInterval) async -> FlushResult {
        await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { [client] in
                continuation.resume(returning: client.flushBlocking(timeoutMs: Self.milliseconds(timeout)))
            }
        }
    }

    /// Tells the core whether the device is online. Going online triggers an upload;
    /// nothing is uploaded while offline.
    public func setNetworkAvailable(_ available: Bool) {
        client.setNetworkAvailable(available: available)
    }

    /// Replaces the device context copied into every later event.
    public func setContext(_ context: DeviceContext) {
        client.setContext(context: context)
    }

    /// Replaces the write key, and resumes uploads paused by a 401 or 403.
    public func setWriteKey(_ writeKey: String) throws {
        try TributaryError.mapping { try client.setWriteKey(writeKey: writeKey) }
    }

    // MARK: Identity and consent

    /// Forgets the user id, traits, super-properties and session, and starts a new anonymous id.
    public func reset() {
        client.reset()
    }

    /// Stops recording and deletes every queued event.
    public func optOut() {
        client.setEnabled(enabled: false)
    }

    /// Resumes recording after ``optOut()``.
    public func optIn() {
        client.setEnabled(enabled: true)
    }

    /// The current anonymous id.
    public var anonymousId: String { client.anonymousId() }

    /// The user id set by ``identify(_:traits:)`` or ``alias(_:)``, if any.
    public var userId: String? { client.userId() }

    /// A snapshot of the queue and the counters.
    public var stats: Stats { client.stats() }

    /// Makes every recorded event durable, tries one last upload within `timeout` seconds
    /// and stops the background threads. Later recording calls drop their event (logged,
    /// counted in `Stats.droppedShutdown`).
    @discardableResult
    public func shutdown(timeout: TimeInterval) -> FlushResult {
        hooks.withLock { $0 }?.stop()
        return client.shutdown(timeoutMs: Self.milliseconds(timeout))
    }

    /// Seconds to whole milliseconds, clamping negative and non-finite values.
    static func milliseconds(_ seconds: TimeInterval) -> UInt64 {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        let ms = (seconds * 1000).rounded(.up)
        return ms >= Double(UInt64.max) ? UInt64.max : UInt64(ms)
    }
}
