import Foundation
import Tributary

/// Where the sample sends events and keeps its queue.
public struct SampleConfiguration: Sendable, Equatable {
    public var endpoint: String
    public var writeKey: String
    public var storageDirectory: URL

    public init(endpoint: String, writeKey: String, storageDirectory: URL) {
        self.endpoint = endpoint
        self.writeKey = writeKey
        self.storageDirectory = storageDirectory
    }

    /// Reads `TributaryEndpoint` and `TributaryWriteKey` from the Info.plist (or the
    /// environment variables `TRIBUTARY_ENDPOINT` / `TRIBUTARY_WRITE_KEY`, which win),
    /// defaulting to a collector on the Mac running the simulator.
    public static func fromBundle(
        _ bundle: Bundle = .main,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        storageDirectory: URL
    ) -> SampleConfiguration {
        let info = bundle.infoDictionary ?? [:]
        return SampleConfiguration(
            endpoint: environment["TRIBUTARY_ENDPOINT"] ?? info["TributaryEndpoint"] as? String ?? "http://127.0.0.1:8080",
            writeKey: environment["TRIBUTARY_WRITE_KEY"] ?? info["TributaryWriteKey"] as? String ?? "sample-write-key",
            storageDirectory: storageDirectory
        )
    }

    /// The options of the setup call: defaults, except a small `flushAt` so the demo
    /// uploads often, and Segment's lifecycle events.
    public var options: TributaryOptions {
        var options = TributaryOptions()
        options.storageDirectory = storageDirectory
        options.flushAt = 5
        options.trackLifecycleEvents = true
        options.logger = SystemLogger(minimumLevel: .debug)
        return options
    }

    /// All the app writes: one setup call. The library watches the network
    /// (`NWPathMonitor`), flushes inside a background task when the app goes to the
    /// background, schedules a `BGTaskScheduler` upload and collects the device context.
    public func start() throws -> Tributary {
        try Tributary.setup(writeKey: writeKey, endpoint: endpoint, options: options)
    }
}
