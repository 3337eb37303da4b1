import Foundation
import Testing
@testable import Tributary

/// Recording through the Swift layer, delivered by the Rust core over real HTTP to a
/// server on 127.0.0.1, and checked as the server decoded it.
@Suite(.serialized) struct RoundTripTests {
    @Test func trackIdentifyScreenGroupAliasArriveAsSegmentBatches() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)

        tributary.track("Signed Up", properties: ["plan": "pro"])
        tributary.identify("user-42", traits: ["email": "a@example.com"])
        tributary.screen("Home", properties: ["tab": 1])
        tributary.group("team-7", traits: ["seats": 5])
        tributary.alias("user-43")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)

        let requests = server.requests
        #expect(!requests.isEmpty)
        for request in requests {
            #expect(request.method == "POST")
            #expect(request.path == "/v1/batch")
            #expect(request.headers["authorization"] == "Basic " + Data("test-key:".utf8).base64EncodedString())
            #expect(request.headers["content-encoding"] == "gzip")
            #expect(request.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect(request.headers["idempotency-key"]?.isEmpty == false)
            #expect(request.json?["sentAt"] is String)
        }
        let events = server.events
        #expect(events.map { $0["type"] as? String } == ["track", "identify", "screen", "group", "alias"])
        #expect(events[0]["event"] as? String == "Signed Up")
        #expect(events[0][path: "properties", "plan"] as? String == "pro")
        #expect(events[1]["userId"] as? String == "user-42")
        #expect(events[1][path: "traits", "email"] as? String == "a@example.com")
        #expect(events[2]["name"] as? String == "Home")
        #expect(events[3]["groupId"] as? String == "team-7")
        #expect(events[4]["userId"] as? String == "user-43")
        #expect(events[4]["previousId"] as? String == "user-42")
        for event in events {
            #expect((event["messageId"] as? String)?.isEmpty == false)
            #expect(event["timestamp"] is String)
            #expect(event[path: "context", "library", "name"] as? String == "tributary-swift")
        }
        #expect(Set(events.compactMap { $0["messageId"] as? String }).count == 5)
        #expect(tributary.userId == "user-43")
        #expect(tributary.stats.uploadedEvents == 5)
        #expect(tributary.stats.queuedEvents == 0)
    }

    @Test func propertiesOfEveryJSONTypeRoundTrip() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        let missing: String? = nil
        let properties: [String: Any] = [
            "string": "héllo \"wörld\"\n\t🎉 </script>",
            "emptyString": "",
            "int": 42,
            "negative": -7,
            "int64Max": Int64.max,
            "uint8": UInt8(200),
            "double": 3.25,
            "float": Float(0.5),
            "tiny": 1e-300,
            "true": true,
            "false": false,
            "null": NSNull(),
            "nil": missing as Any,
            "array": [1, "two", false, NSNull(), [3], ["k": "v"]] as [Any],
            "emptyArray": [Any](),
            "nested": ["a": ["b": ["c": 1]]],
            "emptyObject": [String: Any](),
            "date": Date(timeIntervalSince1970: 1_609_459_200.25),
            "url": URL(string: "https://example.com/a?b=c")!,
        ]
        tributary.track("Types", properties: properties)
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)

        let events = server.events
        try #require(events.count == 1)
        let props = try #require(events[0]["properties"] as? [String: Any])
        #expect(props["string"] as? String == "héllo \"wörld\"\n\t🎉 </script>")
        #expect(props["emptyString"] as? String == "")
        #expect(props["int"] as? Int == 42)
        #expect(props["negative"] as? Int == -7)
        #expect(props["int64Max"] as? Int64 == Int64.max)
        #expect(props["uint8"] as? Int == 200)
        #expect(props["double"] as? Double == 3.25)
        #expect(props["float"] as? Double == 0.5)
        #expect(props["tiny"] as? Double == 1e-300)
        #expect(props["null"] is NSNull)
        #expect(props["nil"] is NSNull)
        #expect(props["emptyArray"] as? [Any] != nil && (props["emptyArray"] as? [Any])?.isEmpty == true)
        #expect((props["emptyObject"] as? [String: Any])?.isEmpty == true)
        #expect(props[path: "nested", "a", "b", "c"] as? Int == 1)
        #expect(props["date"] as? String == "2021-01-01T00:00:00.250Z")
        #expect(props["url"] as? String == "https://example.com/a?b=c")
        let array = try #require(props["array"] as? [Any])
        try #require(array.count == 6)
        #expect(array[0] as? Int == 1)
        #expect(array[1] as? String == "two")
        #expect(array[3] is NSNull)
        #expect((array[4] as? [Any])?.first as? Int == 3)
        #expect((array[5] as? [String: Any])?["k"] as? String == "v")

        // Booleans must stay JSON booleans, not 1/0: check the decoded text itself.
        let text = String(decoding: server.requests[0].body, as: UTF8.self)
        #expect(text.contains(#""true":true"#))
        #expect(text.contains(#""false":false"#))
        #expect(text.contains(#"[1,"two",false,null,[3],{"k":"v"}]"#))
    }

    @Test func flushAloneUploadsEventsRecordedJustBefore() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        for index in 0..<3 {
            tributary.track("Flushed", properties: ["n": index])
        }
        // flush() only triggers (the sample's Flush button): no blocking call here.
        tributary.flush()
        #expect(server.waitUntil(timeout: 20) { server.events.count == 3 }, "flush() did not upload the 3 events")
    }

    @Test func unauthorizedPausesUntilANewWriteKey() throws {
        let server = try TestServer()
        defer { server.stop() }
        let good = "Basic " + Data("new-key:".utf8).base64EncodedString()
        server.respond { request in
            request.headers["authorization"] == good ? .ok : TestResponse(status: 401, body: #"{"error":"bad key"}"#)
        }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        tributary.track("Needs Key")
        #expect(tributary.flushBlocking(timeout: 20) == .unauthorized(pending: 1))
        #expect(tributary.stats.queuedEvents == 1)

        try tributary.setWriteKey("new-key")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        #expect(server.requests.last?.headers["authorization"] == good)
        #expect(server.requests.last?.events.first?["event"] as? String == "Needs Key")
    }

    @Test func offlineEventsWaitAndAreDeliveredWhenOnline() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        tributary.setNetworkAvailable(false)
        for index in 0..<5 {
            tributary.track("Offline", properties: ["n": index])
        }
        #expect(tributary.flushBlocking(timeout: 5) == .offline(pending: 5))
        #expect(server.requests.isEmpty)
        #expect(tributary.stats.queuedEvents == 5)

        tributary.setNetworkAvailable(true)
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        #expect(server.events.compactMap { $0[path: "properties", "n"] as? Int }.sorted() == [0, 1, 2, 3, 4])
    }

    @Test func eightThreadsRecordingAtOnceAreDeliveredExactlyOnce() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(
            config: testConfig(server: server, storage: temporaryStorage(), flushAt: 50), logger: nil
        )
        let threads = 8
        let perThread = 250
        // (count, first error): one line in the report, however many calls fail.
        let failures = Locked<(Int, String?)>((0, nil))
        runOnThreads(threads) { thread in
            for index in 0..<perThread {
                do {
                    tributary.track("Concurrent", properties: ["thread": thread, "i": index])
                } catch {
                    failures.withLock { $0 = ($0.0 + 1, $0.1 ?? "\(thread)/\(index): \(error)") }
                }
            }
        }
        #expect(failures.current.0 == 0, "failed track calls; the first: \(failures.current.1 ?? "")")
        #expect(tributary.flushBlocking(timeout: 60) == .delivered)

        var seen: [String: Int] = [:]
        for event in server.events {
            let key = "\(event[path: "properties", "thread"] as? Int ?? -1)/\(event[path: "properties", "i"] as? Int ?? -1)"
            seen[key, default: 0] += 1
        }
        #expect(seen.count == threads * perThread)
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(Set(server.events.compactMap { $0["messageId"] as? String }).count == threads * perThread)
        let stats = tributary.stats
        #expect(stats.uploadedEvents == UInt64(threads * perThread))
        #expect(stats.droppedBackpressure == 0)
    }

    @Test func restartWithPendingDataResendsTheSameBatchOnce() throws {
        let server = try TestServer()
        defer { server.stop() }
        let storage = try temporaryStorage()
        server.respond { _ in TestResponse(status: 503) }

        do {
            let first = try Tributary(config: testConfig(server: server, storage: storage), logger: nil)
            for index in 0..<6 {
                first.track("Pending", properties: ["n": index])
            }
            // The server answers 503: the batch is persisted, sent, and kept for a retry.
            #expect(first.flushBlocking(timeout: 1) != .delivered)
            #expect(server.waitUntil(timeout: 20) { !server.requests.isEmpty })
            let result = first.shutdown(timeout: 0.5)
            #expect(result != .delivered)
        }
        let failed = server.requests
        let firstKey = try #require(failed.first?.headers["idempotency-key"])
        let firstIds = failed[0].events.compactMap { $0["messageId"] as? String }
        #expect(firstIds.count == 6)

        server.respond { _ in .ok }
        let second = try Tributary(config: testConfig(server: server, storage: storage), logger: nil)
        // The database is opened on the core's thread, not in the initializer.
        #expect(second.awaitReady(timeout: 20))
        #expect(second.stats.queuedEvents == 6)
        #expect(second.flushBlocking(timeout: 30) == .delivered)

        let delivered = server.requests.dropFirst(failed.count)
        try #require(delivered.count == 1)
        #expect(delivered.first?.headers["idempotency-key"] == firstKey)
        #expect(delivered.first?.events.compactMap { $0["messageId"] as? String } == firstIds)
        #expect(delivered.first?.events.compactMap { $0[path: "properties", "n"] as? Int } == [0, 1, 2, 3, 4, 5])
        #expect(second.stats.queuedEvents == 0)
    }

    @Test func loggerIsCalledFromRustThreads() throws {
        let server = try TestServer()
        defer { server.stop() }
        let logger = RecordingLogger()
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: logger)
        let testThread = currentThreadId()
        tributary.track("Logged")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        tributary.shutdown(timeout: 5)

        let entries = logger.entries
        #expect(!entries.isEmpty, "the core logged nothing through the Swift logger")
        #expect(entries.contains { $0.thread != testThread }, "no message came from a core thread")
        #expect(entries.allSatisfy { !$0.message.isEmpty })
    }

    @Test func setContextIsCopiedIntoLaterEvents() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        var context = DeviceContext.current()
        context.appName = "Sample"
        context.deviceModel = "iPhone15,2"
        tributary.setContext(context)
        tributary.track("With Context")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        let event = try #require(server.events.first)
        #expect(event[path: "context", "app", "name"] as? String == "Sample")
        #expect(event[path: "context", "device", "model"] as? String == "iPhone15,2")
        #expect(event[path: "context", "timezone"] as? String == TimeZone.current.identifier)
    }

    @Test func optOutDeletesQueuedDataAndResetStartsANewAnonymousId() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        tributary.setNetworkAvailable(false)
        tributary.track("Before Opt Out")
        #expect(tributary.flushBlocking(timeout: 5) == .offline(pending: 1))

        tributary.optOut()
        #expect(tributary.flushBlocking(timeout: 5) == .disabled)
        // Opting out takes effect at once; the deletion runs on the core's thread.
        #expect(server.waitUntil(timeout: 20) { tributary.stats.queuedEvents == 0 })
        tributary.optIn()

        let before = tributary.anonymousId
        #expect(!before.isEmpty)
        tributary.identify("someone")
        tributary.reset()
        #expect(tributary.anonymousId != before)
        #expect(tributary.userId == nil)

        tributary.setNetworkAvailable(true)
        tributary.track("After Opt In")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        #expect(server.events.compactMap { $0["event"] as? String } == ["After Opt In"])
    }
}
