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

    @Test func eventTooLargeCarriesSizeAndLimit() throws {
        var config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        config.maxEventBytes = 1_000
        let tributary = try Tributary(config: config, logger: nil)
        tributary.setNetworkAvailable(false)
        let error = try #require(tributaryError {
            try tributary.track("Big", properties: ["blob": String(repeating: "x", count: 5_000)])
        })
        guard case .EventTooLarge = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("1000"))
        #expect(error.message.contains("max_event_bytes"))
        #expect(tributary.stats.droppedTooLarge == 1)
        try tributary.track("Small", properties: ["ok": true])
    }

    @Test func invalidJSONFromRustCarriesThePosition() throws {
        // The Swift layer always sends valid JSON, so call the generated client directly.
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let client = try Client(config: config, logger: nil)
        let error = try #require(tributaryError { try client.track(name: "Bad", propertiesJson: "{\"plan\": pro}") })
        guard case .InvalidJson = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("line 1"))
        #expect(error.message.contains("column"))

        let notObject = try #require(tributaryError { try client.identify(userId: "u", traitsJson: "[1,2]") })
        guard case .InvalidJson = notObject else { Issue.record("got \(notObject)"); return }
        #expect(notObject.message.contains("traits"))
    }

    @Test func valuesThatAreNotJSONAreRejectedBeforeRustWithoutACrash() throws {
        struct NotJSON {}
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let tributary = try Tributary(config: config, logger: nil)
        let cases: [(String, [String: Any])] = [
            ("properties.thing", ["thing": NotJSON()]),
            ("properties.nested.deep[1]", ["nested": ["deep": [1, NotJSON()] as [Any]]]),
            ("properties.nan", ["nan": Double.nan]),
            ("properties.infinity", ["infinity": -Double.infinity]),
            ("properties.keys", ["keys": [1: "one"] as [Int: String]]),
            ("properties.data", ["data": Data([1, 2, 3])]),
        ]
        for (path, properties) in cases {
            let error = try #require(tributaryError { try tributary.track("Bad", properties: properties) })
            guard case .InvalidJson = error else { Issue.record("\(path): got \(error)"); continue }
            #expect(error.message.contains(path), "\(error.message)")
        }
        let traitsError = try #require(tributaryError { try tributary.identify("u", traits: ["x": NotJSON()]) })
        #expect(traitsError.message.contains("traits.x"))
        #expect(tributary.stats.queuedEvents == 0)
    }

    @Test func secondClientOnTheSameDirectoryIsRefused() throws {
        let storage = try temporaryStorage()
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: storage)
        let first = try Tributary(config: config, logger: nil)
        let error = try #require(tributaryError { _ = try Tributary(config: config, logger: nil) })
        guard case .StorageUnavailable = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains(storage.path))
        try first.track("Still Works")
    }

    @Test func callsAfterShutdownThrowShutDown() throws {
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let tributary = try Tributary(config: config, logger: nil)
        tributary.setNetworkAvailable(false)
        tributary.shutdown(timeout: 1)
        let error = try #require(tributaryError { try tributary.track("Late") })
        guard case .ShutDown = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("create a new"))
    }
}
