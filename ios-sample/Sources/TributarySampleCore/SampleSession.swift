import Foundation
import Tributary

/// What the sample screen shows.
public struct SampleState: Sendable, Equatable {
    /// Events recorded by the "Track" button.
    public var tracked = 0
    /// The user's "Go offline" switch.
    public var forcedOffline = false
    /// The last state NWPathMonitor reported.
    public var networkAvailable = true
    /// The last stats snapshot.
    public var stats = Stats(
        queuedEvents: 0, queuedBytes: 0, inFlightEvents: 0, inFlightBatch: nil, uploadedEvents: 0,
        droppedAge: 0, droppedByteCap: 0, droppedRejected: 0, droppedTooLarge: 0, droppedBackpressure: 0,
        retries: 0, lastError: nil, databaseResets: 0
    )
    /// The last error or flush result, for the status line.
    public var message: String?

    /// Whether the SDK is told the network is available: the path is up and the user did
    /// not force offline mode.
    public var effectiveOnline: Bool { networkAvailable && !forcedOffline }
}

/// The sample's logic without UI: the four actions (track, go offline, flush, stats),
/// network monitoring and the flush when the app goes to the background.
///
/// Thread-safe: state is guarded by a lock (hence `@unchecked Sendable`); the network
/// monitor and background tasks call in from their own threads.
public final class SampleSession: @unchecked Sendable {
    public let tributary: Tributary
    private let reachability: NetworkReachability?
    private let backgroundTasks: BackgroundTaskRunner
    private let flushQueue = DispatchQueue(label: "dev.tributary.sample.flush")
    private let lock = NSLock()
    private var _state = SampleState()
    private var observers: [@Sendable (SampleState) -> Void] = []

    /// How long the background flush may take; iOS grants about 30 s.
    public var backgroundFlushTimeout: TimeInterval = 20

    public init(tributary: Tributary, reachability: NetworkReachability?, backgroundTasks: BackgroundTaskRunner) {
        self.tributary = tributary
        self.reachability = reachability
        self.backgroundTasks = backgroundTasks
    }

    public var state: SampleState { lock.withLock { _state } }

    /// `observer` is called (on any thread) after every state change.
    public func observe(_ observer: @escaping @Sendable (SampleState) -> Void) {
        lock.withLock { observers.append(observer) }
    }

    /// Starts the network monitor; call once at launch.
    public func start() {
        reachability?.start { [weak self] available in self?.networkChanged(available: available) }
        refreshStats()
    }

    public func stop() {
        reachability?.stop()
    }

    // MARK: The four actions

    /// "Track": records one event.
    public func trackButtonTapped() {
        let number = lock.withLock { () -> Int in
            _state.tracked += 1
            return _state.tracked
        }
        // Never throws: what the core refuses is logged and counted in stats.
        tributary.track("Button Tapped", properties: ["number": number, "screen": "home"])
        update { $0.message = "tracked #\(number)" }
        refreshStats()
    }

    /// "Go offline": the user's switch, combined with the monitored network state.
    public func setForcedOffline(_ offline: Bool) {
        let online = update { $0.forcedOffline = offline }.effectiveOnline
        tributary.setNetworkAvailable(online)
        refreshStats()
    }

    /// "Flush": asks for an upload now, without blocking the caller.
    public func flushButtonTapped() {
        tributary.flush()
        update { $0.message = "flush requested" }
    }

    /// "Stats": takes a fresh snapshot.
    @discardableResult
    public func refreshStats() -> Stats {
        let stats = tributary.stats
        update { $0.stats = stats }
        return stats
    }

    // MARK: Platform hooks

    /// Called by the network monitor.
    public func networkChanged(available: Bool) {
        let online = update { $0.networkAvailable = available }.effectiveOnline
        tributary.setNetworkAvailable(online)
    }

    /// Called on `didEnterBackground`: flushes inside a background task, and ends the task
    /// exactly once, whether the flush finishes, the OS expires the task, or the OS
    /// refuses to start it (then the flush is only requested). `completion` receives the
    /// flush result (nil if the task expired first or could not start).
    public func didEnterBackground(completion: (@Sendable (FlushResult?) -> Void)? = nil) {
        let ender = TaskEnder(runner: backgroundTasks)
        guard let token = backgroundTasks.begin(name: "tributary-flush", expiration: { ender.end() }) else {
            tributary.flush()
            completion?(nil)
            return
        }
        ender.set(token)
        let tributary = self.tributary
        let timeout = backgroundFlushTimeout
        flushQueue.async { [weak self] in
            let result = tributary.flushBlocking(timeout: timeout)
            let endedHere = ender.end()
            self?.update { $0.message = "background flush: \(result)" }
            completion?(endedHere ? result : nil)
        }
    }

    @discardableResult
    private func update(_ change: (inout SampleState) -> Void) -> SampleState {
        let (state, observers) = lock.withLock { () -> (SampleState, [@Sendable (SampleState) -> Void]) in
            change(&_state)
            return (_state, self.observers)
        }
        for observer in observers { observer(state) }
        return state
    }
}

/// Ends one background task exactly once, from whichever side gets there first.
final class TaskEnder: @unchecked Sendable {
    private let runner: BackgroundTaskRunner
    private let lock = NSLock()
    private var token: BackgroundTaskToken?
    private var ended = false

    init(runner: BackgroundTaskRunner) { self.runner = runner }

    func set(_ token: BackgroundTaskToken) {
        let endNow = lock.withLock { () -> Bool in
            self.token = token
            return ended // expiration came before begin() returned
        }
        if endNow { runner.end(token) }
    }

    /// Returns true for the first caller only.
    @discardableResult
    func end() -> Bool {
        let token = lock.withLock { () -> BackgroundTaskToken?? in
            if ended { return .none }
            ended = true
            return .some(self.token)
        }
        guard case let .some(maybeToken) = token else { return false }
        if let maybeToken { runner.end(maybeToken) }
        return true
    }
}
