package dev.tributary

import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.URL

/**
 * Sends the core's upload requests with the platform's `HttpURLConnection`, so the
 * app's proxy settings, its network security config (trusted CAs, pinning) and any
 * `SSLSocketFactory` it sets apply. It only moves bytes: the core built the request
 * (gzipped body, `Content-Encoding`, `Idempotency-Key`, `Authorization`) and it
 * classifies the answer, Retry-After and redirects included.
 *
 * - Redirects are never followed (`instanceFollowRedirects = false`): the 30x goes
 *   back to the core, which retries with backoff and logs it.
 * - Any `IOException` (no route, refused or cut connection, TLS failure, timeout,
 *   a body cut short) is reported as [TransportException], a retryable failure.
 * - Anything else it throws becomes a retryable failure in the core too: nothing
 *   here can crash the upload thread.
 *
 * @param openConnection opens the connection for a URL; replace it to customise the
 *   connection (e.g. `(url.openConnection() as HttpsURLConnection).apply { sslSocketFactory = … }`).
 */
class HttpTransport @JvmOverloads constructor(
    private val openConnection: (URL) -> HttpURLConnection = { it.openConnection() as HttpURLConnection },
) : Transport {

    override fun send(request: HttpRequest): HttpResponse {
        val connection = try {
            openConnection(URL(request.url))
        } catch (e: Exception) {
            throw TransportException("cannot open ${request.url}: $e")
        }
        try {
            connection.requestMethod = request.method
            connection.instanceFollowRedirects = false
            connection.useCaches = false
            connection.connectTimeout = millis(request.connectTimeoutMs)
            connection.readTimeout = millis(request.timeoutMs)
            connection.doOutput = true
            connection.setFixedLengthStreamingMode(request.body.size)
            for (header in request.headers) {
                connection.setRequestProperty(header.name, header.value)
            }
            connection.outputStream.use { it.write(request.body) }
            val status = connection.responseCode
            if (status !in 100..599) {
                throw TransportException("no HTTP status in the answer from ${request.url}")
            }
            val headers = ArrayList<HttpHeader>()
            for ((name, values) in connection.headerFields) {
                if (name == null) continue // the status line
                for (value in values) headers.add(HttpHeader(name, value))
            }
            val stream: InputStream? = if (status >= 400) connection.errorStream else connection.inputStream
            val body = stream?.use { readAtMost(it, MAX_RESPONSE_BYTES) } ?: ByteArray(0)
            return HttpResponse(status, headers, body)
        } catch (e: TransportException) {
            throw e
        } catch (e: IOException) {
            throw TransportException("request to ${request.url} failed: $e")
        } catch (e: RuntimeException) {
            throw TransportException("request to ${request.url} failed: $e")
        } finally {
            connection.disconnect()
        }
    }

    private companion object {
        /** The core reads at most this much of an answer. */
        const val MAX_RESPONSE_BYTES = 1 shl 20

        fun millis(value: Long): Int = value.coerceIn(1, Int.MAX_VALUE.toLong()).toInt()

        fun readAtMost(stream: InputStream, limit: Int): ByteArray {
            val out = java.io.ByteArrayOutputStream()
            val buffer = ByteArray(16 * 1024)
            while (out.size() < limit) {
                val n = stream.read(buffer, 0, minOf(buffer.size, limit - out.size()))
                if (n < 0) break
                out.write(buffer, 0, n)
            }
            return out.toByteArray()
        }
    }
}

/** One HTTP header of a request or an answer. */
data class HttpHeader(val name: String, val value: String)

/**
 * An upload request the core built, ready to send as is: the body is already gzipped and
 * the headers (`Content-Encoding`, `Idempotency-Key`, `Authorization`) are set.
 *
 * @property connectTimeoutMs the connect timeout, in ms.
 * @property timeoutMs the whole request's timeout, in ms: [Transport.send] must return
 *   within it (plus a little).
 */
class HttpRequest(
    val method: String,
    val url: String,
    val headers: List<HttpHeader>,
    val body: ByteArray,
    val connectTimeoutMs: Long,
    val timeoutMs: Long,
)

/** The answer to an [HttpRequest]: the status, the headers (Retry-After) and the body. */
class HttpResponse(
    val status: Int,
    val headers: List<HttpHeader>,
    val body: ByteArray,
)

/** No complete answer (no route, a cut connection, a timeout…): the core retries with backoff. */
class TransportException(message: String) : IOException(message)

/**
 * Sends the core's upload requests; [HttpTransport] (`HttpURLConnection`) by default.
 * It only moves bytes: the core builds each request and classifies each answer
 * (redirects, Retry-After, backoff). Called on the core's upload thread, one request at a
 * time. Throw [TransportException] when there is no complete answer; anything else it
 * throws is a retryable failure too.
 */
fun interface Transport {
    @Throws(TransportException::class)
    fun send(request: HttpRequest): HttpResponse
}

/** Hands a [Transport] to the core as the generated interface (unsigned numbers there). */
internal class TransportBridge(private val inner: Transport) : dev.tributary.ffi.TributaryTransport {
    override fun send(request: dev.tributary.ffi.HttpRequest): dev.tributary.ffi.HttpResponse {
        val response = try {
            inner.send(
                HttpRequest(
                    request.method,
                    request.url,
                    request.headers.map { HttpHeader(it.name, it.value) },
                    request.body,
                    clamp(request.connectTimeoutMs),
                    clamp(request.timeoutMs),
                ),
            )
        } catch (e: TransportException) {
            throw dev.tributary.ffi.TransportException.Failed(e.message ?: e.toString())
        } catch (e: Exception) {
            throw dev.tributary.ffi.TransportException.Failed("the transport threw $e")
        }
        if (response.status !in 0..65_535) {
            throw dev.tributary.ffi.TransportException.Failed("the transport returned status ${response.status}")
        }
        return dev.tributary.ffi.HttpResponse(
            response.status.toUShort(),
            response.headers.map { dev.tributary.ffi.HttpHeader(it.name, it.value) },
            response.body,
        )
    }

    private fun clamp(value: ULong): Long = if (value > Long.MAX_VALUE.toULong()) Long.MAX_VALUE else value.toLong()
}
