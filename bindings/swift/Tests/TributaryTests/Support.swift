import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import Tributary

/// A fresh directory under the temporary directory, for one client's queue.
func temporaryStorage(_ name: String = #function) throws -> URL {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("tributary-swift-tests", isDirectory: true)
        .appendingPathComponent("\(safe)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// A configuration for tests: uploads only when asked (or at `flushAt`), quick retries.
func testConfig(server: TestServer, storage: URL, flushAt: UInt32 = 10_000) -> TributaryConfig {
    var config = Tributary.configuration(endpoint: server.endpoint, writeKey: "test-key", storageDirectory: storage)
    config.flushAt = flushAt
    config.flushIntervalMs = 3_600_000
    config.retryBaseDelayMs = 20
    config.retryMaxDelayMs = 200
    config.connectTimeoutMs = 2_000
    config.requestTimeoutMs = 5_000
    return config
}

/// An id for the calling OS thread.
func currentThreadId() -> UInt {
    #if canImport(Glibc)
    UInt(pthread_self())
    #else
    UInt(bitPattern: pthread_self())
    #endif
}

/// A TributaryLogger that keeps every message, with the thread that delivered it. The Rust core
/// calls it from its own threads: the state is guarded by a lock, hence `@unchecked Sendable`.
final class RecordingLogger: TributaryLogger, @unchecked Sendable {
    struct Entry {
        let level: LogLevel
        let message: String
        let thread: UInt
    }

    private let lock = NSLock()
    private var recorded: [Entry] = []

    func log(level: LogLevel, message: String) {
        let entry = Entry(level: level, message: message, thread: currentThreadId())
        lock.withLock { recorded.append(entry) }
    }

    var entries: [Entry] { lock.withLock { recorded } }
}

/// Runs `body(index)` on `count` new OS threads at once and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.name = "recorder-\(index)"
        thread.start()
    }
    group.wait()
}

/// Collects values from several threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
    var current: Value { lock.withLock { value } }
}

/// The value of an event's `properties.key`, or its `traits.key`.
extension Dictionary where Key == String, Value == Any {
    subscript(path path: String...) -> Any? {
        var current: Any? = self
        for key in path {
            current = (current as? [String: Any])?[key]
        }
        return current
    }
}
