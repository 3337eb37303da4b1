import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One request the test server received, with its body gunzipped.
struct RecordedRequest: @unchecked Sendable {
    let method: String
    let path: String
    /// Header names in lower case.
    let headers: [String: String]
    /// The body after gzip decoding.
    let body: Data

    /// The body parsed as a JSON object, if it is one.
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    }

    /// The events of a Segment `/v1/batch` body.
    var events: [[String: Any]] {
        json?["batch"] as? [[String: Any]] ?? []
    }
}

/// What the server answers to a request.
struct TestResponse: Sendable {
    var status: Int
    var body: String = "{}"
    /// Extra header lines, e.g. `"Retry-After: 1"`.
    var headers: [String] = []
    /// Close the connection without answering (a cut connection).
    var cut = false
    static let ok = TestResponse(status: 200)
    static let cutConnection = TestResponse(status: 0, cut: true)
}

enum TestServerError: Error {
    case socket(String)
    case gzip(String)
}

/// A small HTTP/1.1 server on 127.0.0.1 with a random port, written with POSIX sockets
/// because Foundation has no server on Linux. One thread accepts, one thread serves each
/// connection (keep-alive supported); bodies may be sized or chunked, and gzip-encoded.
/// Every request is recorded; `respond` scripts the answers.
final class TestServer: @unchecked Sendable {
    let port: UInt16
    var endpoint: String { "http://127.0.0.1:\(port)" }

    private let listenFd: Int32
    private let lock = NSLock()
    private var recorded: [RecordedRequest] = []
    private var responder: @Sendable (RecordedRequest) -> TestResponse = { _ in .ok }
    private var stopped = false

    init() throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw TestServerError.socket("socket: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestServerError.socket("bind/listen: errno \(errno)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listenFd = fd
        port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "test-server-accept"
        thread.start()
    }

    deinit { stop() }

    /// Scripts the answers from now on.
    func respond(_ responder: @escaping @Sendable (RecordedRequest) -> TestResponse) {
        lock.withLock { self.responder = responder }
    }

    /// Every request so far, in arrival order.
    var requests: [RecordedRequest] { lock.withLock { recorded } }

    /// Every event of every batch request answered 2xx... and of the others: callers
    /// filter with `requests` when the status matters.
    var events: [[String: Any]] { requests.flatMap(\.events) }

    /// Stops accepting; open connections end when their client closes them.
    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first {
            shutdown(listenFd, Int32(SHUT_RDWR))
            close(listenFd)
        }
    }

    /// Polls `condition` until it holds or `timeout` seconds pass.
    @discardableResult
    func waitUntil(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return condition()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listenFd, nil, nil)
            if client < 0 {
                if lock.withLock({ stopped }) { return }
                continue
            }
            // A client that stalls must not pin a thread forever.
            var timeout = timeval(tv_sec: 15, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let thread = Thread { [self] in
                serve(client)
                close(client)
            }
            thread.name = "test-server-conn"
            thread.start()
        }
    }

    /// Serves requests on one connection until the client closes it or sends garbage.
    private func serve(_ fd: Int32) {
        var reader = SocketReader(fd: fd)
        while let request = try? readRequest(&reader) {
            let respond = lock.withLock { () -> @Sendable (RecordedRequest) -> TestResponse in
                recorded.append(request)
                return responder
            }
            let response = respond(request)
            if response.cut { return }
            let body = Data(response.body.utf8)
            var head = "HTTP/1.1 \(response.status) \(reason(response.status))\r\n"
            for line in response.headers { head += line + "\r\n" }
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
            guard sendAll(fd, Data(head.utf8) + body) else { return }
        }
    }

    private func readRequest(_ reader: inout SocketReader) throws -> RecordedRequest {
        let headText = String(decoding: try reader.readUntil(Data("\r\n\r\n".utf8)), as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { throw TestServerError.socket("bad request line") }
        var headers: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data()
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = String(decoding: try reader.readUntil(Data("\r\n".utf8)), as: UTF8.self)
                let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
                if size == 0 {
                    _ = try reader.readUntil(Data("\r\n".utf8))
                    break
                }
                body += try reader.read(count: size)
                _ = try reader.read(count: 2)
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }), length > 0 {
            body = try reader.read(count: length)
        }
        if headers["content-encoding"]?.lowercased() == "gzip" {
            body = try gunzip(body)
        }
        return RecordedRequest(
            method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body
        )
    }

    private func sendAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                #if canImport(Glibc)
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                #else
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, 0)
                #endif
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }

    private func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 413: "Payload Too Large"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// Buffered reads from a socket.
private struct SocketReader {
    let fd: Int32
    var buffer = Data()

    mutating func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        guard n > 0 else { throw TestServerError.socket("connection closed") }
        buffer.append(contentsOf: chunk[0..<n])
    }

    /// Bytes up to `delimiter`, consuming the delimiter too.
    mutating func readUntil(_ delimiter: Data) throws -> Data {
        while true {
            if let range = buffer.range(of: delimiter) {
                let out = buffer[buffer.startIndex..<range.lowerBound]
                buffer = Data(buffer[range.upperBound...])
                return Data(out)
            }
            try fill()
        }
    }

    mutating func read(count: Int) throws -> Data {
        while buffer.count < count { try fill() }
        let out = buffer.prefix(count)
        buffer = Data(buffer.dropFirst(count))
        return Data(out)
    }
}

/// Decodes a gzip stream with zlib (Foundation on Linux has no decompression API).
func gunzip(_ data: Data) throws -> Data {
    var stream = z_stream()
    // 16 + MAX_WBITS: expect a gzip header, not a raw zlib one.
    guard inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw TestServerError.gzip("inflateInit2 failed")
    }
    defer { inflateEnd(&stream) }
    var input = [UInt8](data)
    var output = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    var status: Int32 = Z_OK
    try input.withUnsafeMutableBufferPointer { inPtr in
        stream.next_in = inPtr.baseAddress
        stream.avail_in = uInt(inPtr.count)
        repeat {
            try chunk.withUnsafeMutableBufferPointer { outPtr in
                stream.next_out = outPtr.baseAddress
                stream.avail_out = uInt(outPtr.count)
                status = inflate(&stream, Z_NO_FLUSH)
                guard status == Z_OK || status == Z_STREAM_END else {
                    throw TestServerError.gzip("inflate returned \(status)")
                }
                output.append(outPtr.baseAddress!, count: outPtr.count - Int(stream.avail_out))
            }
        } while status != Z_STREAM_END
    }
    return output
}
