import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Tributary

/// Records what the core handed to the transport, then sends it with URLSession.
final class RecordingTransport: TributaryTransport, @unchecked Sendable {
    let inner = URLSessionTransport()
    let sent = Locked<[TributaryHttpRequest]>([])
    func send(request: TributaryHttpRequest) throws -> TributaryHttpResponse {
        sent.withLock { $0.append(request) }
        return try inner.send(request: request)
    }
}

private func plainRequest(_ url: String) -> TributaryHttpRequest {
    TributaryHttpRequest(
        method: "POST", url: url,
        headers: [TributaryHttpHeader(name: "Content-Type", value: "application/json"),
                  TributaryHttpHeader(name: "Idempotency-Key", value: "key-1")],
        body: Data("{\"batch\":[]}".utf8), connectTimeoutMs: 2_000, timeoutMs: 5_000
    )
}

/// URLSessionTransport against a real HTTP server on 127.0.0.1 (FoundationNetworking on
/// Linux), alone and under the Rust core.
@Suite(.serialized) struct TransportTests {
    @Test func returnsStatusHeadersAndBodyAndSendsTheCoreSGzipUntouched() throws {
        let server = try TestServer()
        defer { server.stop() }
        server.respond { _ in TestResponse(status: 429, body: "{\"error\":\"slow\"}", headers: ["Retry-After: 7"]) }
        let response = try URLSessionTransport().send(request: plainRequest("\(server.endpoint)/v1/batch"))
        #expect(response.status == 429)
        #expect(response.headers.first { $0.name.lowercased() == "retry-after" }?.value == "7")
        #expect(String(decoding: response.body, as: UTF8.self) == "{\"error\":\"slow\"}")
        #expect(server.requests.first?.headers["idempotency-key"] == "key-1")

        // Under the core: the gzip body it made arrives byte for byte.
        server.respond { _ in .ok }
        let transport = RecordingTransport()
        let tributary = try Tributary(
            config: testConfig(server: server, storage: temporaryStorage()), logger: nil, transport: transport
        )
        tributary.track("Sent", properties: ["n": 1])
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        let made = try #require(transport.sent.current.first)
        #expect(made.headers.contains { $0.name == "Content-Encoding" && $0.value == "gzip" })
        let arrived = try #require(server.requests.last)
        #expect(arrived.headers["content-encoding"] == "gzip")
        #expect(try gunzip(made.body) == arrived.body)
        #expect(arrived.events.first?["event"] as? String == "Sent")
    }

    @Test func aRedirectIsReturnedNotFollowed() throws {
        let server = try TestServer()
        defer { server.stop() }
        let endpoint = server.endpoint
        server.respond { request in
            request.path == "/v1/batch"
                ? TestResponse(status: 302, headers: ["Location: \(endpoint)/elsewhere"])
                : .ok
        }
        let response = try URLSessionTransport().send(request: plainRequest("\(endpoint)/v1/batch"))
        #expect(response.status == 302)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(server.requests.map(\.path) == ["/v1/batch"])
    }

    @Test func aCutConnectionOrAClosedPortIsATransportError() throws {
        let server = try TestServer()
        server.respond { _ in .cutConnection }
        #expect(throws: TributaryTransportError.self) {
            try URLSessionTransport().send(request: plainRequest("\(server.endpoint)/v1/batch"))
        }
        let closed = server.endpoint
        server.stop()
        #expect(throws: TributaryTransportError.self) {
            try URLSessionTransport().send(request: plainRequest("\(closed)/v1/batch"))
        }
    }

    @Test func underTheCoreACutConnectionAndRetryAfterAreRetriedUnderOneKey() throws {
        let server = try TestServer()
        defer { server.stop() }
        let times = Locked<[Date]>([])
        server.respond { _ in
            let n = times.withLock { $0.append(Date()); return $0.count }
            switch n {
            case 1: return .cutConnection
            case 2: return TestResponse(status: 503, headers: ["Retry-After: 1"])
            case 3: return TestResponse(status: 307, headers: ["Location: /elsewhere"])
            default: return .ok
            }
        }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        tributary.track("Checkout")
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        let requests = server.requests
        #expect(requests.count == 4)
        #expect(requests.allSatisfy { $0.path == "/v1/batch" }, "the 307 was not followed")
        #expect(Set(requests.compactMap { $0.headers["idempotency-key"] }).count == 1)
        let t = times.current
        #expect(t[2].timeIntervalSince(t[1]) >= 0.95, "Retry-After honoured")
        #expect(tributary.stats.retries == 3)
    }

    @Test func superPropertiesTraitsAndSessionsReachTheServer() throws {
        let server = try TestServer()
        defer { server.stop() }
        let tributary = try Tributary(config: testConfig(server: server, storage: temporaryStorage()), logger: nil)
        tributary.register(["plan": "pro", "build": 1])
        tributary.unregister("build")
        tributary.identify("u1", traits: ["email": "a@example.com"])
        tributary.appBackgrounded()
        tributary.appForegrounded()
        tributary.track("A", properties: ["x": 1])
        tributary.page("Pricing", timestamp: Date(timeIntervalSince1970: 1_700_000_000.123),
                       context: ["ip": "0.0.0.0"], integrations: ["All": false])
        #expect(tributary.flushBlocking(timeout: 20) == .delivered)
        let events = server.events
        #expect(events.count == 3)
        #expect(events[2]["type"] as? String == "page")
        #expect(events[2]["timestamp"] as? String == "2023-11-14T22:13:20.123Z")
        #expect(events[2][path: "context", "ip"] as? String == "0.0.0.0")
        #expect(events[2][path: "integrations", "All"] as? Bool == false)
        #expect(events[1][path: "properties", "plan"] as? String == "pro")
        #expect(events[1][path: "properties", "build"] == nil)
        #expect(events[1][path: "context", "traits", "email"] as? String == "a@example.com")
        #expect((events[1][path: "context", "sessionId"] as? NSNumber)?.int64Value == tributary.sessionId)
        #expect(tributary.superPropertiesJSON == "{\"plan\":\"pro\"}")
        tributary.reset()
        #expect(tributary.traitsJSON == "{}")
    }
}
