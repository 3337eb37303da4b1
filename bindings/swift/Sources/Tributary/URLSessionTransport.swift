import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Sends the core's upload requests with `URLSession`, so the app's proxy settings,
/// App Transport Security, trusted certificates and any pinning it does in a session
/// delegate apply. It only moves bytes: the core built the request (gzipped body,
/// `Content-Encoding`, `Idempotency-Key`, `Authorization`) and classifies the answer,
/// `Retry-After` and redirects included.
///
/// - Redirects are never followed: the 30x goes back to the core, which retries with
///   backoff and logs it.
/// - No answer (no route, refused or cut connection, TLS failure, timeout) is a
///   `TributaryTransportError`, which the core retries with backoff. Nothing here throws into
///   the app: the core calls it on its upload thread.
///
/// The core calls ``send(request:)`` on its own upload thread, one request at a time,
/// and waits for the answer; it returns within the request's timeout.
public final class URLSessionTransport: TributaryTransport, @unchecked Sendable {
    private let session: URLSession

    /// A transport over a session made from `configuration` (ephemeral by default: no
    /// cookies or cache; the app's proxy settings still apply).
    public init(configuration: URLSessionConfiguration = .ephemeral) {
        session = URLSession(configuration: configuration, delegate: NoRedirects(), delegateQueue: nil)
    }

    deinit { session.invalidateAndCancel() }

    /// Sends `request` as given and reports the status, headers and body.
    public func send(request: TributaryHttpRequest) throws -> TributaryHttpResponse {
        guard let url = URL(string: request.url) else {
            throw TributaryTransportError.failed(reason: "not a URL: \(request.url)")
        }
        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = request.method
        urlRequest.httpBody = request.body
        urlRequest.timeoutInterval = Double(max(request.timeoutMs, 1)) / 1000
        for header in request.headers {
            urlRequest.setValue(header.value, forHTTPHeaderField: header.name)
        }
        let outcome = Outcome()
        let task = session.dataTask(with: urlRequest) { data, response, error in
            outcome.finish(data: data, response: response, error: error)
        }
        task.resume()
        // The request's own timeout ends the task first; this bound only guards
        // against a task that never completes.
        let bound = DispatchTime.now() + .milliseconds(Int(min(request.timeoutMs, 86_400_000)) + 5_000)
        guard outcome.done.wait(timeout: bound) == .success else {
            task.cancel()
            throw TributaryTransportError.failed(reason: "request to \(request.url) did not complete in time")
        }
        return try outcome.result(url: request.url)
    }

    /// What the task's completion handler delivered.
    private final class Outcome: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        private var data: Data?
        private var response: URLResponse?
        private var error: (any Error)?

        func finish(data: Data?, response: URLResponse?, error: (any Error)?) {
            self.data = data
            self.response = response
            self.error = error
            done.signal()
        }

        /// Read after `done` was signalled, which orders it after `finish`.
        func result(url: String) throws -> TributaryHttpResponse {
            if let error {
                throw TributaryTransportError.failed(reason: "request to \(url) failed: \(error.localizedDescription)")
            }
            guard let http = response as? HTTPURLResponse else {
                throw TributaryTransportError.failed(reason: "request to \(url) got no HTTP answer")
            }
            guard (100...599).contains(http.statusCode) else {
                throw TributaryTransportError.failed(reason: "request to \(url) got status \(http.statusCode)")
            }
            var headers: [TributaryHttpHeader] = []
            for (name, value) in http.allHeaderFields {
                headers.append(TributaryHttpHeader(name: "\(name)", value: "\(value)"))
            }
            return TributaryHttpResponse(status: UInt16(http.statusCode), headers: headers, body: data ?? Data())
        }
    }

    /// Refuses every redirect, so the task completes with the 30x itself.
    private final class NoRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
        func urlSession(
            _ session: URLSession,
            task: URLSessionTask,
            willPerformHTTPRedirection response: HTTPURLResponse,
            newRequest request: URLRequest,
            completionHandler: @escaping @Sendable (URLRequest?) -> Void
        ) {
            completionHandler(nil)
        }
    }
}
