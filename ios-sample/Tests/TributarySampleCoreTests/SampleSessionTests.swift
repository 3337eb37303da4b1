import Foundation
import Testing
import Tributary
@testable import TributarySampleCore

/// A network monitor the test drives by hand.
final class ManualReachability: NetworkReachability, @unchecked Sendable {
    private let lock = NSLock()
    private var handler: (@Sendable (Bool) -> Void)?
    private(set) var stopped = false

    func start(onChange: @escaping @Sendable (Bool) -> Void) {
        lock.withLock { handler = onChange }
        onChange(true)
    }

    func stop() { lock.withLock { stopped = true } }

    func report(_ available: Bool) {
        let handler = lock.withLock { self.handler }
        handler?(available)
    }
}

/// Records begin/end like UIApplication would, optionally expiring at once or refusing.
final class RecordingBackgroundTasks: BackgroundTaskRunner, @unchecked Sendable {
    enum Mode { case normal, expireImmediately, refuse }
    private let lock = NSLock()
    private let mode: Mode
    private var next = 1
    private(set) var begun: [BackgroundTaskToken] = []
    private(set) var ended: [BackgroundTaskToken] = []

    init(mode: Mode = .normal) { self.mode = mode }

    func begin(name: String, expiration: @escaping @Sendable () -> Void) -> BackgroundTaskToken? {
        if mode == .refuse { return nil }
        let token = lock.withLock { () -> BackgroundTaskToken in
            defer { next += 1 }
            let token = BackgroundTaskToken(rawValue: next)
            begun.append(token)
            return token
        }
        if mode == .expireImmediately { expiration() }
        return token
    }

    func end(_ token: BackgroundTaskToken) { lock.withLock { ended.append(token) } }

    var snapshot: (begun: [BackgroundTaskToken], ended: [BackgroundTaskToken]) { lock.withLock { (begun, ended) } }
}

func temporaryStorage() throws -> URL {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("tributary-sample-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// A session whose collector does not exist (port 9 refuses connections): uploads fail
/// and retry, which is all these tests need, since they check the wiring, not delivery.
func makeSession(
    reachability: ManualReachability = ManualReachability(),
    tasks: RecordingBackgroundTasks = RecordingBackgroundTasks()
) throws -> SampleSession {
    let configuration = SampleConfiguration(
        endpoint: "http://127.0.0.1:9", writeKey: "sample", storageDirectory: try temporaryStorage()
    )
    let tributary = try Tributary(config: configuration.tributaryConfig, logger: nil)
    return SampleSession(tributary: tributary, reachability: reachability, backgroundTasks: tasks)
}

/// Waits for `completion` results delivered on another thread.
final class Completion<Value: Sendable>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var value: Value?
    func fulfil(_ value: Value) {
        lock.withLock { self.value = value }
        semaphore.signal()
    }
    func wait(timeout: TimeInterval) -> Value? {
        guard semaphore.wait(timeout: .now() + timeout) == .success else { return nil }
        return lock.withLock { value }
    }
}

@Suite(.serialized) struct SampleSessionTests {
    @Test func configurationComesFromTheEnvironmentOrDefaults() throws {
        let storage = try temporaryStorage()
        let fromEnv = SampleConfiguration.fromBundle(
            environment: ["TRIBUTARY_ENDPOINT": "https://collector.example", "TRIBUTARY_WRITE_KEY": "wk"],
            storageDirectory: storage
        )
        #expect(fromEnv.endpoint == "https://collector.example")
        #expect(fromEnv.writeKey == "wk")
        let defaults = SampleConfiguration.fromBundle(environment: [:], storageDirectory: storage)
        #expect(defaults.endpoint == "http://127.0.0.1:8080")
        let config = defaults.tributaryConfig
        #expect(config.flushAt == 5)
        #expect(config.libraryName == "tributary-swift")
        #expect(config.storageDir == storage.path)
    }

    @Test func networkMonitorAndOfflineSwitchDriveSetNetworkAvailable() throws {
        let reachability = ManualReachability()
        let session = try makeSession(reachability: reachability)
        session.start()
        #expect(session.state.effectiveOnline)

        reachability.report(false)
        #expect(!session.state.effectiveOnline)
        session.trackButtonTapped()
        #expect(session.tributary.flushBlocking(timeout: 5) == .offline(pending: 1))

        // The path is back, but the user's switch keeps the SDK offline.
        session.setForcedOffline(true)
        reachability.report(true)
        #expect(session.tributary.flushBlocking(timeout: 5) == .offline(pending: 1))

        session.setForcedOffline(false)
        #expect(session.state.effectiveOnline)
        // Online now: the upload is attempted (and fails, the port is closed), so the
        // result is no longer `offline`.
        let result = session.tributary.flushBlocking(timeout: 1)
        if case .offline = result { Issue.record("still offline: \(result)") }
        session.stop()
        #expect(reachability.stopped)
    }

    @Test func trackAndStatsActionsUpdateTheState() throws {
        let session = try makeSession()
        let seen = Completion<SampleState>()
        session.observe { state in if state.tracked == 2 { seen.fulfil(state) } }
        session.setForcedOffline(true)
        session.trackButtonTapped()
        session.trackButtonTapped()
        #expect(seen.wait(timeout: 5)?.tracked == 2)
        #expect(session.tributary.flushBlocking(timeout: 5) == .offline(pending: 2))
        #expect(session.refreshStats().queuedEvents == 2)
        #expect(session.state.stats.queuedEvents == 2)
        #expect(session.state.message == "tracked #2")
        session.flushButtonTapped()
        #expect(session.state.message == "flush requested")
    }

    @Test func backgroundFlushRunsInsideATaskThatIsEndedOnce() throws {
        let tasks = RecordingBackgroundTasks()
        let session = try makeSession(tasks: tasks)
        session.setForcedOffline(true)
        session.trackButtonTapped()
        let done = Completion<FlushResult?>()
        session.didEnterBackground { done.fulfil($0) }
        let result = done.wait(timeout: 10)
        #expect(result == .some(.offline(pending: 1)))
        let (begun, ended) = tasks.snapshot
        #expect(begun.count == 1)
        #expect(ended == begun)
    }

    @Test func expiredTaskIsEndedOnceEvenIfTheFlushIsStillRunning() throws {
        let tasks = RecordingBackgroundTasks(mode: .expireImmediately)
        let session = try makeSession(tasks: tasks)
        session.backgroundFlushTimeout = 0.5
        session.trackButtonTapped() // online, to a closed port: the flush runs until its timeout
        let done = Completion<FlushResult?>()
        session.didEnterBackground { done.fulfil($0) }
        #expect(done.wait(timeout: 10) == .some(nil))
        let (begun, ended) = tasks.snapshot
        #expect(begun.count == 1)
        #expect(ended == begun)
    }

    @Test func refusedTaskStillRequestsAFlush() throws {
        let tasks = RecordingBackgroundTasks(mode: .refuse)
        let session = try makeSession(tasks: tasks)
        let done = Completion<FlushResult?>()
        session.didEnterBackground { done.fulfil($0) }
        #expect(done.wait(timeout: 5) == .some(nil))
        #expect(tasks.snapshot.ended.isEmpty)
    }
}

@Test func taskEnderEndsExactlyOnceFromAnySide() {
    let tasks = RecordingBackgroundTasks()
    let token = tasks.begin(name: "t", expiration: {})!
    let ender = TaskEnder(runner: tasks)
    ender.set(token)
    let firsts = Completion<Int>()
    let count = NSLock()
    nonisolated(unsafe) var wins = 0
    DispatchQueue.concurrentPerform(iterations: 16) { _ in
        if ender.end() { count.withLock { wins += 1 } }
    }
    firsts.fulfil(wins)
    #expect(firsts.wait(timeout: 1) == 1)
    #expect(tasks.snapshot.ended == [token])

    // Expiration before begin() returned: set() ends the task.
    let early = TaskEnder(runner: tasks)
    #expect(early.end())
    early.set(BackgroundTaskToken(rawValue: 99))
    #expect(tasks.snapshot.ended == [token, BackgroundTaskToken(rawValue: 99)])
}
