import Foundation
import Testing
import Tributary
@testable import TributarySampleCore

func temporaryStorage() throws -> URL {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("tributary-sample-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

@Suite(.serialized) struct SampleConfigurationTests {
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
        #expect(defaults.options.flushAt == 5)
        #expect(defaults.options.trackLifecycleEvents)
        #expect(defaults.options.storageDirectory == storage)
    }

    /// The setup call the app makes, against a port where nothing listens: it starts,
    /// records without throwing, and keeps the events on disk.
    @Test func theSetupCallStartsAndRecords() throws {
        let storage = try temporaryStorage()
        let sample = SampleConfiguration(endpoint: "http://127.0.0.1:9", writeKey: "wk", storageDirectory: storage)
        let tributary = try sample.start()
        tributary.track("Button Tapped", properties: ["count": 1])
        tributary.screen("Main")
        #expect(tributary.awaitReady(timeout: 10))
        let result = tributary.shutdown(timeout: 0.5)
        #expect(result == .timedOut(pending: 2))
    }
}
