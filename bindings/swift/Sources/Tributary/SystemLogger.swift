import Foundation
#if canImport(os)
import os
#endif

/// The default ``TributaryLogger``: the core's messages go to os_log (subsystem
/// `dev.tributary`, category `sdk`) on Apple platforms and to standard output elsewhere.
///
/// The core calls it from its own background threads. It holds only immutable state,
/// which is why it is `@unchecked Sendable` (`OSLog` is thread-safe but not annotated).
public final class SystemLogger: TributaryLogger, @unchecked Sendable {
    /// Messages below this level are ignored.
    public let minimumLevel: LogLevel

    #if canImport(os)
    private let log: OSLog

    /// - Parameter minimumLevel: messages below it are dropped before reaching os_log.
    public init(minimumLevel: LogLevel = .info, subsystem: String = "dev.tributary", category: String = "sdk") {
        self.minimumLevel = minimumLevel
        self.log = OSLog(subsystem: subsystem, category: category)
    }
    #else
    /// - Parameter minimumLevel: messages below it are not printed.
    public init(minimumLevel: LogLevel = .info) {
        self.minimumLevel = minimumLevel
    }
    #endif

    public func log(level: LogLevel, message: String) {
        guard level.rank >= minimumLevel.rank else { return }
        #if canImport(os)
        os_log("%{public}@", log: log, type: level.osLogType, message)
        #else
        print("[tributary] \(level.label): \(message)")
        #endif
    }
}

extension LogLevel {
    /// Severity order: debug < info < warn < error.
    var rank: Int {
        switch self {
        case .debug: 0
        case .info: 1
        case .warn: 2
        case .error: 3
        }
    }

    /// Upper-case name, as printed on Linux.
    var label: String {
        switch self {
        case .debug: "DEBUG"
        case .info: "INFO"
        case .warn: "WARN"
        case .error: "ERROR"
        }
    }

    #if canImport(os)
    var osLogType: OSLogType {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warn: .default
        case .error: .error
        }
    }
    #endif
}
