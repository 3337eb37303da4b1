package dev.tributary

import dev.tributary.ffi.HttpHeader
import dev.tributary.ffi.HttpRequest
import dev.tributary.ffi.HttpResponse
import dev.tributary.ffi.TransportException
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
 *   a body cut short) is reported as [TransportException.Failed], a retryable failure.
 * - Anything else it throws becomes a retryable failure in the core too: nothing
 *   here can crash the upload thread.
 *
 * @param openConnection opens the connection for a URL; replace it to customise the
 *   connection (e.g. `(url.openConnection() as HttpsURLConnection).apply { sslSocketFactory = … }`).
 */
class HttpTransport @JvmOverloads constructor(
    private val openConnection: (URL) -> HttpURLConnection = { it.openConnection() as HttpURLConnection },
) : dev.tributary.ffi.TributaryTransport {

    override fun send(request: HttpRequest): HttpResponse {
        val connection = try {
            openConnection(URL(request.url))
        } catch (e: Exception) {
            throw TransportException.Failed("cannot open ${request.url}: $e")
        }
        try {
            connection.requestMethod = request.method
            connection.instanceFollowRedirects = false
            connection.useCaches = false
            connection.connectTimeout = millis(request.connectTimeoutMs.toLong())
            connection.readTimeout = millis(request.timeoutMs.toLong())
            connection.doOutput = true
            connection.setFixedLengthStreamingMode(request.body.size)
            for (header in request.headers) {
                connection.setRequestProperty(header.name, header.value)
            }
            connection.outputStream.use { it.write(request.body) }
            val status = connection.responseCode
            if (status !in 100..599) {
                throw TransportException.Failed("no HTTP status in the answer from ${request.url}")
            }
            val headers = ArrayList<HttpHeader>()
            for ((name, values) in connection.headerFields) {
                if (name == null) continue // the status line
                for (value in values) headers.add(HttpHeader(name, value))
            }
            val stream: InputStream? = if (status >= 400) connection.errorStream else connection.inputStream
            val body = stream?.use { readAtMost(it, MAX_RESPONSE_BYTES) } ?: ByteArray(0)
            return HttpResponse(status.toUShort(), headers, body)
        } catch (e: TransportException) {
            throw e
        } catch (e: IOException) {
            throw TransportException.Failed("request to ${request.url} failed: $e")
        } catch (e: RuntimeException) {
            throw TransportException.Failed("request to ${request.url} failed: $e")
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
