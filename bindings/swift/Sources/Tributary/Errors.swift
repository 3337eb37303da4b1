import Foundation

/// An error the Rust core reports; ``message`` says what went wrong and what to do.
///
/// Thrown only by the initializers, ``Tributary/setup(writeKey:endpoint:options:)`` and
/// ``Tributary/setWriteKey(_:)``: the recording calls never throw. The generated UniFFI
/// error (`FfiTributaryError`, whose cases UniFFI capitalises) stays internal and is
/// mapped to this type at the boundary.
public enum TributaryError: Error, Equatable, Hashable, Sendable, CustomStringConvertible, LocalizedError {
    /// The properties or traits argument is not a JSON object.
    case invalidJson(message: String)
    /// The serialized event exceeds `maxEventBytes`.
    case eventTooLarge(message: String)
    /// The storage directory or database cannot be used.
    case storageUnavailable(message: String)
    /// A configuration field has a value that cannot work; the message names it.
    case invalidConfig(message: String)
    /// The client was shut down; create a new one.
    case shutDown(message: String)

    init(_ error: FfiTributaryError) {
        switch error {
        case let .InvalidJson(message): self = .invalidJson(message: message)
        case let .EventTooLarge(message): self = .eventTooLarge(message: message)
        case let .StorageUnavailable(message): self = .storageUnavailable(message: message)
        case let .InvalidConfig(message): self = .invalidConfig(message: message)
        case let .ShutDown(message): self = .shutDown(message: message)
        }
    }

    /// The Rust core's message: what went wrong and what to do.
    public var message: String {
        switch self {
        case let .invalidJson(message),
             let .eventTooLarge(message),
             let .storageUnavailable(message),
             let .invalidConfig(message),
             let .shutDown(message):
            return message
        }
    }

    /// The same as ``message``.
    public var description: String { message }

    /// The same as ``message``; it makes `localizedDescription` readable.
    public var errorDescription: String? { message }

    /// Runs `body`, throwing the core's error as a ``TributaryError``.
    static func mapping<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as FfiTributaryError {
            throw TributaryError(error)
        }
    }
}

/// Why a ``TributaryTransport`` got no complete answer. The core retries it with backoff
/// and puts ``reason`` in the log and `Stats.lastError`.
public enum TributaryTransportError: Error, Equatable, Hashable, Sendable, CustomStringConvertible, LocalizedError {
    /// No complete answer: no route, a refused, reset or cut connection, a TLS failure,
    /// a timeout, or a body that could not be read.
    case failed(reason: String)

    /// What went wrong, for the log.
    public var reason: String {
        switch self {
        case let .failed(reason): return reason
        }
    }

    /// The same as ``reason``.
    public var description: String { reason }

    /// The same as ``reason``.
    public var errorDescription: String? { reason }
}

/// Hands the core a transport whose errors are the generated `FfiTransportError`: a
/// ``TributaryTransportError`` keeps its reason, any other error becomes a failed
/// attempt described by the error itself.
final class TransportAdapter: TributaryTransport {
    let inner: any TributaryTransport

    init(_ inner: any TributaryTransport) {
        self.inner = inner
    }

    func send(request: TributaryHttpRequest) throws -> TributaryHttpResponse {
        do {
            return try inner.send(request: request)
        } catch let error as TributaryTransportError {
            throw FfiTransportError.Failed(reason: error.reason)
        } catch let error as FfiTransportError {
            throw error
        } catch {
            throw FfiTransportError.Failed(reason: String(describing: error))
        }
    }
}
