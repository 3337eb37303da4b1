import Foundation

extension TributaryError: CustomStringConvertible {
    /// The Rust core's message: what went wrong and what to do.
    public var message: String {
        switch self {
        case let .InvalidJson(message),
             let .EventTooLarge(message),
             let .StorageUnavailable(message),
             let .InvalidConfig(message),
             let .ShutDown(message):
            return message
        }
    }

    /// The same as ``message``; it also makes `localizedDescription` readable.
    public var description: String { message }
}
