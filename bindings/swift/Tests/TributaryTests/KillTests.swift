import Foundation
import Testing
@testable import Tributary

/// A real process records, is killed with SIGKILL, and a new client in this process
/// delivers what it had made durable, exactly once.
@Suite(.serialized) struct KillTests {
    /// The helper executable, built by `swift test` next to the test bundle.
    static var helper: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // On macOS the runner sits inside the .xctest bundle.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("TributaryCrashHelper").path),
              dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("TributaryCrashHelper")
    }

    @Test func eventsDurableBeforeSIGKILLAreDeliveredAfterRestart() throws {
        let server = try TestServer()
        defer { server.stop() }
        let storage = try temporaryStorage()
        let count = 200

        let process = Process()
        process.executableURL = Self.helper
        process.arguments = [storage.path, server.endpoint, "\(count)"]
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()

        // Read until the helper says its first `count` events are durable.
        var output = Data()
        let deadline = Date().addingTimeInterval(60)
        while !String(decoding: output, as: UTF8.self).contains("\n"), Date() < deadline {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            output.append(chunk)
        }
        let line = String(decoding: output, as: UTF8.self)
        Thread.sleep(forTimeInterval: 0.05) // let it write "During Kill" events
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(line.hasPrefix("durable \(count) offline"), "helper said: \(line)")
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(server.requests.isEmpty)

        // The directory is free again once the killed process is gone.
        let tributary = try Tributary(config: testConfig(server: server, storage: storage), logger: nil)
        #expect(tributary.flushBlocking(timeout: 30) == .delivered)
        let events = server.events
        let before = events.filter { $0["event"] as? String == "Before Kill" }
            .compactMap { $0[path: "properties", "n"] as? Int }
        #expect(before.sorted() == Array(0..<count), "every durable event, exactly once")
        let during = events.filter { $0["event"] as? String == "During Kill" }
            .compactMap { $0[path: "properties", "n"] as? Int }
        #expect(Set(during).count == during.count, "no duplicates among the events written during the kill")
        #expect(during.sorted() == Array(0..<during.count), "the survivors are a prefix: nothing in the middle lost")
        #expect(Set(events.compactMap { $0["messageId"] as? String }).count == events.count)
    }
}
