import Foundation
import Testing
import Tributary // not @testable: the quick start must work with the public API only

/// The code of README.md's quick start, compiled and run against the test server, so the
/// documentation cannot drift from the API.
@Suite(.serialized) struct ReadmeExampleTests {
    @Test func quickStartRecordsAndDelivers() async throws {
        let server = try TestServer()
        defer { server.stop() }

        // --- README: Record events (endpoint and directory adapted to the test) ---
        let tributary = try Tributary(
            endpoint: server.endpoint,
            writeKey: "YOUR_WRITE_KEY",
            storageDirectory: temporaryStorage()
        )

        tributary.track("Signed Up", properties: [
            "plan": "pro",
            "seats": 5,
            "trial": false,
            "referrer": NSNull(),                // JSON null (a nil Optional works too)
            "tags": ["ios", "beta"],
            "billing": ["interval": "month", "amount": 9.99],
            "startedAt": Date(),                 // ISO 8601 string
        ])
        tributary.identify("user-42", traits: ["email": "ada@example.com"])
        tributary.screen("Home")
        tributary.group("team-7", traits: ["name": "Analytics"])
        tributary.alias("user-43")

        tributary.setContext(.current())         // app, OS, locale and time zone
        #expect(tributary.stats.queuedEvents <= 5)
        // --- end of README code ---

        #expect(await tributary.flush(timeout: 20) == .delivered)
        #expect(server.events.count == 5)
        #expect(server.events.first?["event"] as? String == "Signed Up")
        #expect(server.requests.first?.headers["authorization"] == "Basic " + Data("YOUR_WRITE_KEY:".utf8).base64EncodedString())
    }

    @Test func readmeErrorHandlingAndConfiguration() throws {
        let server = try TestServer()
        defer { server.stop() }
        let url = server.endpoint, key = "k", dir = try temporaryStorage()

        // --- README: configuration ---
        var config = Tributary.configuration(endpoint: url, writeKey: key, storageDirectory: dir)
        config.flushAt = 50
        config.maxQueueBytes = 10_000_000
        let tributary = try Tributary(config: config, logger: SystemLogger(minimumLevel: .debug))

        // --- README: errors ---
        let someData = Data([1, 2, 3])
        tributary.track("Upload", properties: ["file": someData]) // sent as "3 bytes"
        print(tributary.stats.droppedTooLarge, tributary.stats.droppedShutdown)
        var caught: String?
        do {
            _ = try Tributary(config: config, logger: nil)
        } catch let error as TributaryError {
            switch error {
            case .invalidConfig: caught = error.message      // names the field
            case .storageUnavailable: caught = error.message // not thrown by the constructor any more
            case .invalidJson, .eventTooLarge, .shutDown: caught = error.message
            }
        }
        #expect(caught == nil, "the constructor touches no file, so a second client is not refused")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        #expect(server.events.last?["properties"].flatMap { ($0 as? [String: Any])?["file"] as? String } == "3 bytes")
        #expect(try Tributary.defaultStorageDirectory().lastPathComponent == "tributary")
    }
}

// --- README: Logging ---
final class MyLogger: TributaryLogger, @unchecked Sendable {   // @unchecked: guarded by the lock
    private let lock = NSLock()
    private var lines: [String] = []
    func log(level: LogLevel, message: String) {
        lock.withLock { lines.append("\(level): \(message)") }
    }
}
