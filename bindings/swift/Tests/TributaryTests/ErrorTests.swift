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
        guard case .invalidConfig = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("endpoint"))
        #expect(error.localizedDescription == error.message)
        #expect("\(error)" == error.message)

        config.endpoint = "http://127.0.0.1:9"
        config.flushAt = 0
        let zero = try #require(tributaryError { _ = try Tributary(config: config, logger: nil) })
        #expect(zero == .invalidConfig(message: "invalid config field `flush_at`: must be at least 1"))
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
        let client = try Client.withTransport(config: config, logger: nil, transport: TransportAdapter(URLSessionTransport()))
        let error = try #require(tributaryError {
            try TributaryError.mapping { try client.track(name: "Bad", propertiesJson: "{\"plan\": pro}") }
        })
        guard case .invalidJson = error else { Issue.record("got \(error)"); return }
        #expect(error.message.contains("line 1"))
        #expect(error.message.contains("column"))

        let notObject = try #require(tributaryError {
            try TributaryError.mapping { try client.identify(userId: "u", traitsJson: "[1,2]") }
        })
        guard case .invalidJson = notObject else { Issue.record("got \(notObject)"); return }
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

    /// Every case of the generated error maps to the lowerCamelCase case of the public
    /// one, with its message; the generated type itself is not what the API throws.
    @Test func everyCoreErrorMapsToALowerCamelCaseCase() throws {
        let pairs: [(FfiTributaryError, TributaryError)] = [
            (.InvalidJson(message: "a"), .invalidJson(message: "a")),
            (.EventTooLarge(message: "b"), .eventTooLarge(message: "b")),
            (.StorageUnavailable(message: "c"), .storageUnavailable(message: "c")),
            (.InvalidConfig(message: "d"), .invalidConfig(message: "d")),
            (.ShutDown(message: "e"), .shutDown(message: "e")),
        ]
        for (generated, expected) in pairs {
            let thrown = try #require(tributaryError { try TributaryError.mapping { throw generated } })
            #expect(thrown == expected)
            #expect(thrown.message == expected.message)
            // The case name as Swift prints it: lowerCamelCase.
            let caseName = String(String(reflecting: thrown).split(separator: ".").last?.split(separator: "(").first ?? "")
            #expect(caseName.first?.isLowercase == true, "\(caseName)")
        }
        // setWriteKey maps too (an empty key is refused by the core).
        let config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage())
        let tributary = try Tributary(config: config, logger: nil)
        let empty = try #require(tributaryError { try tributary.setWriteKey("") })
        guard case .invalidConfig = empty else { Issue.record("got \(empty)"); return }
        tributary.shutdown(timeout: 0)
    }

    /// A custom transport throws the public `TributaryTransportError.failed(reason:)`; the
    /// core receives it as a failed attempt with that reason (in `stats.lastError`), and
    /// any other error as a failed attempt described by the error.
    @Test func aCustomTransportsErrorReachesTheCoreWithItsReason() throws {
        final class Failing: TributaryTransport, @unchecked Sendable {
            func send(request: TributaryHttpRequest) throws -> TributaryHttpResponse {
                throw TributaryTransportError.failed(reason: "custom transport says no")
            }
        }
        struct Odd: Error, CustomStringConvertible { var description: String { "an odd error" } }
        final class Odder: TributaryTransport, @unchecked Sendable {
            func send(request: TributaryHttpRequest) throws -> TributaryHttpResponse { throw Odd() }
        }
        for (transport, expected) in [(Failing() as any TributaryTransport, "custom transport says no"), (Odder(), "an odd error")] {
            var config = Tributary.configuration(endpoint: "http://127.0.0.1:9", writeKey: "k", storageDirectory: try temporaryStorage("transport-\(expected.count)"))
            config.retryBaseDelayMs = 10_000
            let tributary = try Tributary(config: config, logger: nil, transport: transport)
            tributary.track("Fails")
            let result = tributary.flushBlocking(timeout: 1)
            #expect(result == .timedOut(pending: 1), "\(result)")
            #expect(tributary.stats.lastError?.contains(expected) == true, "\(String(describing: tributary.stats.lastError))")
            #expect(tributary.stats.retries >= 1)
            tributary.shutdown(timeout: 0)
        }
        let adapted = TransportAdapter(Failing())
        let request = TributaryHttpRequest(method: "POST", url: "http://127.0.0.1:9/v1/batch", headers: [], body: Data(), connectTimeoutMs: 1, timeoutMs: 1)
        #expect(throws: FfiTransportError.Failed(reason: "custom transport says no")) { try adapted.send(request: request) }
    }
}
