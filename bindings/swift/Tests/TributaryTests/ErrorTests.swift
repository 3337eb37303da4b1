import Foundation
import Testing
@testable import Tributary

/// Calls `body` and returns the TributaryError it threw (nil, recorded as a failure, otherwise).
func tributaryError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> TributaryError? {
    do {
        try body()
        Issue.record("expected a TributaryError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as TributaryError {
        return error
    } catch {
        Issue.record("expected a TributaryError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Errors raised by the Rust core arrive as `TributaryError` cases with its message.
@Suite(.serialized) struct ErrorTests {
    @Test func invalidConfigNamesTheField() throws {
        var config = Tributary.configuration(endpoint: "ftp://example.com", writeKey: "k", storageDirectory: try temporaryStorage())
        let error = try #require(tributaryError { _ = try Tributary(config: config, logger: nil) })
        guard case .InvalidConfig = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("endpoint"))
        #expect(error.localizedDescription == error.message)
        #expect("\(error)" == error.message)

        config.endpoint = "http://127.0.0.1:9"
        config.flushAt = 0
        let zero = try #require(tributaryError { _ = try Tributary(config: config, logger: nil) })
        #expect(zero == .InvalidConfig(message: "invalid config field `flush_at`: must be at least 1"))
    }

    @Test func aTooLargeEventIsDroppedLoggedAndCountedNotThrown() throws {
        var config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        config.maxEventBytes = 1_000
        let logger = RecordingLogger()
        let tributary = try Tributary(config: config, logger: logger)
        tributary.setNetworkAvailable(false)
        tributary.track("Big", properties: ["blob": String(repeating: "x", count: 5_000)])
        #expect(tributary.stats.droppedTooLarge == 1)
        #expect(logger.entries.contains { $0.level == .warn && $0.message.contains("max_event_bytes") })
        tributary.track("Small", properties: ["ok": true])
        #expect(tributary.flushBlocking(timeout: 10) == .offline(pending: 1))
    }

    @Test func invalidJSONFromRustCarriesThePosition() throws {
        // The Swift layer always sends valid JSON, so call the generated client directly.
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let client = try Client.withTransport(config: config, logger: nil, transport: URLSessionTransport())
        let error = try #require(tributaryError { try client.track(name: "Bad", propertiesJson: "{\"plan\": pro}") })
        guard case .InvalidJson = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("line 1"))
        #expect(error.message.contains("column"))

        let notObject = try #require(tributaryError { try client.identify(userId: "u", traitsJson: "[1,2]") })
        guard case .InvalidJson = notObject else { Issue.record("got \(notObject)"); return }
        #expect(notObject.message.contains("traits"))
    }

    @Test func aSecondClientOnTheSameDirectoryWaitsForItAndSaysWhy() throws {
        let storage = try temporaryStorage()
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: storage)
        let first = try Tributary(config: config, logger: nil)
        #expect(first.awaitReady(timeout: 10))
        let second = try Tributary(config: config, logger: nil)
        #expect(!second.awaitReady(timeout: 0.3))
        #expect(second.stats.lastError?.contains(storage.path) == true)
        first.track("Still Works")
        #expect(first.stats.recordedEvents == 1)
        first.shutdown(timeout: 0)
        #expect(second.awaitReady(timeout: 10))
        second.shutdown(timeout: 0)
    }

    @Test func recordingAfterShutdownDoesNotThrowAndIsCounted() throws {
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let logger = RecordingLogger()
        let tributary = try Tributary(config: config, logger: logger)
        tributary.setNetworkAvailable(false)
        tributary.shutdown(timeout: 1)
        tributary.track("Late")
        tributary.identify("u")
        tributary.screen("S")
        tributary.group("g")
        tributary.alias("a")
        tributary.page("P")
        #expect(tributary.stats.droppedShutdown == 6)
        #expect(logger.entries.filter { $0.level == .warn && $0.message.contains("after shutdown") }.count == 6)
    }
}
