import Foundation
import Testing
@testable import Tributary

/// Stands in for NWPathMonitor: the test decides when the network comes and goes.
final class ScriptedReachability: TributaryReachability, @unchecked Sendable {
    let handler = Locked<(@Sendable (Bool) -> Void)?>(nil)
    func start(onChange: @escaping @Sendable (Bool) -> Void) {
        handler.withLock { $0 = onChange }
        onChange(true)
    }
    func stop() { handler.withLock { $0 = nil } }
    func set(_ online: Bool) { handler.current?(online) }
}

/// Stands in for the UIApplication notifications; `background()` hands out a
/// BackgroundWork whose end is counted, as beginBackgroundTask's would be.
final class ScriptedLifecycle: TributaryLifecycle, @unchecked Sendable {
    let handlers = Locked<((@Sendable () -> Void), (@Sendable (BackgroundWork) -> Void))?>(nil)
    let ended = Locked(0)
    func start(onForeground: @escaping @Sendable () -> Void, onBackground: @escaping @Sendable (BackgroundWork) -> Void) {
        handlers.withLock { $0 = (onForeground, onBackground) }
    }
    func stop() { handlers.withLock { $0 = nil } }
    func foreground() { handlers.current?.0() }
    @discardableResult
    func background() -> BackgroundWork {
        let work = BackgroundWork { [ended] in ended.withLock { $0 += 1 } }
        handlers.current?.1(work)
        return work
    }
}

final class CountingScheduler: TributaryUploadScheduler, @unchecked Sendable {
    let scheduled = Locked(0)
    let cancelled = Locked(0)
    func schedule() { scheduled.withLock { $0 += 1 } }
    func cancel() { cancelled.withLock { $0 += 1 } }
}

final class FixedContext: TributaryContextProvider, @unchecked Sendable {
    let version: String
    init(version: String) { self.version = version }
    func collect() -> DeviceContext {
        DeviceContext(appName: "Shop", appVersion: version, appBuild: "7", deviceManufacturer: "Apple",
                      deviceModel: "iPhone15,2", deviceType: "ios", osName: "iOS", osVersion: "17.1",
                      locale: "fr-FR", timezone: "Europe/Paris", screenWidth: 393, screenHeight: 852, screenDensity: 3)
    }
}

private func options(storage: URL, version: String = "1.0") -> TributaryOptions {
    var o = TributaryOptions()
    o.storageDirectory = storage
    o.flushAt = 10_000
    o.flushInterval = 3_600
    o.trackLifecycleEvents = true
    o.logger = nil
    o.contextProvider = FixedContext(version: version)
    return o
}

/// The setup call's logic on Linux: the hooks are stand-ins for the Apple frameworks,
/// the client, its SQLite queue and URLSession transport are real, and so is the server.
@Suite(.serialized) struct PlatformTests {
    @Test func setupWiresReachabilityLifecycleSchedulerAndContext() throws {
        let server = try TestServer()
        defer { server.stop() }
        let reachability = ScriptedReachability()
        let lifecycle = ScriptedLifecycle()
        let scheduler = CountingScheduler()
        var o = options(storage: try temporaryStorage())
        o.reachability = reachability
        o.lifecycle = lifecycle
        o.uploadScheduler = scheduler
        let tributary = try Tributary.setup(writeKey: "k", endpoint: server.endpoint, options: o)
        defer { tributary.shutdown(timeout: 0) }
        #expect(Tributary.shared === tributary)
        lifecycle.foreground()
        tributary.hooks.withLock { $0 }?.awaitIdle()
        tributary.track("Viewed")
        reachability.set(false)
        #expect(tributary.flushBlocking(timeout: 2) == .offline(pending: 3))
        #expect(server.requests.isEmpty)
        reachability.set(true)
        let work = lifecycle.background()
        tributary.hooks.withLock { $0 }?.awaitIdle()
        #expect(scheduler.scheduled.current == 1)
        // The flush inside the background task delivers, then ends the task once.
        #expect(server.waitUntil(timeout: 10) { work.isEnded })
        #expect(lifecycle.ended.current == 1)
        work.end()
        #expect(lifecycle.ended.current == 1, "ending again does nothing")
        let names = server.events.compactMap { $0["event"] as? String }
        #expect(names == ["Application Installed", "Application Opened", "Viewed", "Application Backgrounded"])
        let viewed = server.events[2]
        #expect(viewed[path: "context", "device", "model"] as? String == "iPhone15,2")
        #expect(viewed[path: "context", "screen", "width"] as? Int == 393)
        #expect(viewed[path: "context", "locale"] as? String == "fr-FR")
        lifecycle.foreground()
        tributary.hooks.withLock { $0 }?.awaitIdle()
        #expect(scheduler.cancelled.current == 2)
    }

    @Test func backgroundWorkEndsExactlyOnceWhenExpirationRacesCompletion() {
        for _ in 0..<200 {
            let ends = Locked(0)
            let work = BackgroundWork { ends.withLock { $0 += 1 } }
            runOnThreads(4) { _ in work.end() }
            #expect(ends.current == 1)
        }
    }

    @Test func installedOnceThenUpdatedWhenTheVersionChanges() throws {
        let server = try TestServer()
        defer { server.stop() }
        let storage = try temporaryStorage()
        func run(_ version: String) throws -> [String] {
            let before = server.events.count
            let t = try Tributary.setup(writeKey: "k", endpoint: server.endpoint, options: options(storage: storage, version: version))
            t.hooks.withLock { $0 }?.awaitIdle()
            #expect(t.flushBlocking(timeout: 10) == .delivered)
            t.shutdown(timeout: 0)
            return server.events.dropFirst(before).compactMap { $0["event"] as? String }
        }
        #expect(try run("1.0") == ["Application Installed"])
        #expect(try run("1.0") == [])
        #expect(try run("1.1") == ["Application Updated"])
        #expect(server.events.last?[path: "properties", "previous_version"] as? String == "1.0")
    }
}
