package dev.tributary.tests

import dev.tributary.EventOptions
import dev.tributary.FlushResult
import dev.tributary.HttpTransport
import dev.tributary.Tributary
import dev.tributary.TributaryConfig
import dev.tributary.HttpHeader
import dev.tributary.HttpRequest
import dev.tributary.TransportException
import java.io.ByteArrayOutputStream
import java.io.InputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.nio.file.Files
import java.util.concurrent.ConcurrentLinkedQueue
import java.util.zip.GZIPInputStream
import java.util.zip.GZIPOutputStream
import kotlin.concurrent.thread
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertIs
import kotlin.test.assertTrue

/** A request as [RawServer] read it off the socket. */
class RawRequest(val path: String, val headers: Map<String, String>, val body: ByteArray, val atNanos: Long) {
    fun header(name: String): String? = headers[name.lowercase()]

    @Suppress("UNCHECKED_CAST")
    fun events(): List<Map<String, Any?>> {
        val json = GZIPInputStream(body.inputStream()).readBytes().toString(Charsets.UTF_8)
        return (MiniJson.parse(json) as Map<String, Any?>)["batch"] as List<Map<String, Any?>>
    }
}

/**
 * An HTTP/1.1 server on 127.0.0.1 over a plain ServerSocket, so a test can answer
 * with exact bytes or cut the connection. Each reply is used once, in order; then
 * every request gets [fallback]. `null` as a reply cuts the connection after reading
 * the request.
 */
class RawServer(private val fallback: String? = ok()) : AutoCloseable {
    private val socket = ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"))
    private val replies = ConcurrentLinkedQueue<Reply>()
    val requests = ConcurrentLinkedQueue<RawRequest>()
    val endpoint: String get() = "http://127.0.0.1:${socket.localPort}"

    class Reply(val text: String?)

    init {
        thread(isDaemon = true, name = "raw-server") {
            while (!socket.isClosed) {
                val conn = try {
                    socket.accept()
                } catch (e: Exception) {
                    break
                }
                thread(isDaemon = true) {
                    conn.use { c ->
                        val input = c.getInputStream()
                        val request = readRequest(input) ?: return@use
                        requests.add(request)
                        val scripted = replies.poll()
                        val reply = if (scripted != null) scripted.text else fallback
                        if (reply != null) {
                            c.getOutputStream().write(reply.toByteArray())
                            c.getOutputStream().flush()
                        }
                    }
                }
            }
        }
    }

    fun reply(vararg texts: String?) {
        texts.forEach { replies.add(Reply(it)) }
    }

    override fun close() {
        socket.close()
    }

    companion object {
        fun ok(body: String = "{\"success\":true}") =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n$body"

        fun status(code: Int, vararg headers: String, body: String = "{}") =
            "HTTP/1.1 $code X\r\n" + headers.joinToString("") { "$it\r\n" } +
                "Content-Length: ${body.length}\r\nConnection: close\r\n\r\n$body"

        private fun readRequest(input: InputStream): RawRequest? {
            val head = ByteArrayOutputStream()
            var last4 = 0
            while (true) {
                val b = input.read()
                if (b < 0) return null
                head.write(b)
                last4 = (last4 shl 8) or b
                if (last4 == 0x0d0a0d0a) break
            }
            val lines = head.toString(Charsets.ISO_8859_1).split("\r\n").filter { it.isNotEmpty() }
            val path = lines.first().split(" ")[1]
            val headers = lines.drop(1).associate {
                val i = it.indexOf(':')
                it.substring(0, i).trim().lowercase() to it.substring(i + 1).trim()
            }
            val length = headers["content-length"]?.toInt() ?: 0
            val body = ByteArray(length)
            var read = 0
            while (read < length) {
                val n = input.read(body, read, length - read)
                if (n < 0) return null
                read += n
            }
            return RawRequest(path, headers, body, System.nanoTime())
        }
    }
}

private fun gzip(text: String): ByteArray {
    val out = ByteArrayOutputStream()
    GZIPOutputStream(out).use { it.write(text.toByteArray()) }
    return out.toByteArray()
}

private fun request(url: String, body: ByteArray = gzip("{\"batch\":[]}")) = HttpRequest(
    method = "POST",
    url = url,
    headers = listOf(
        HttpHeader("Content-Type", "application/json"),
        HttpHeader("Content-Encoding", "gzip"),
        HttpHeader("Idempotency-Key", "key-1"),
        HttpHeader("Authorization", "Basic d2s6"),
    ),
    body = body,
    connectTimeoutMs = 2_000L,
    timeoutMs = 5_000L,
)

private fun config(endpoint: String, dir: java.io.File) = TributaryConfig(
    endpoint = endpoint,
    writeKey = "wk",
    storageDir = dir.absolutePath,
    flushAt = 1000,
    flushIntervalMs = 3_600_000L,
    retryBaseDelayMs = 20L,
    retryMaxDelayMs = 200L,
    connectTimeoutMs = 2_000L,
    requestTimeoutMs = 5_000L,
)

private fun withTributary(server: RawServer, body: (Tributary) -> Unit) {
    val dir = Files.createTempDirectory("tributary-transport").toFile()
    val client = Tributary(config(server.endpoint, dir), logger = null)
    try {
        body(client)
    } finally {
        client.shutdown(0)
        dir.deleteRecursively()
    }
}

object TransportTests {
    fun cases() = listOf(
        TestCase("transport: sends the gzipped bytes and headers as given, returns status, headers and body") {
            RawServer().use { server ->
                server.reply(RawServer.status(429, "Retry-After: 7", body = "{\"error\":\"slow down\"}"))
                val body = gzip("{\"batch\":[{\"type\":\"track\"}]}")
                val response = HttpTransport().send(request("${server.endpoint}/v1/batch", body))
                assertEquals(429, response.status.toInt())
                assertEquals("7", response.headers.first { it.name.equals("Retry-After", true) }.value)
                assertEquals("{\"error\":\"slow down\"}", response.body.toString(Charsets.UTF_8))
                val seen = server.requests.single()
                assertContentEquals(body, seen.body, "not compressed again, not decompressed")
                assertEquals("gzip", seen.header("Content-Encoding"))
                assertEquals("key-1", seen.header("Idempotency-Key"))
                assertEquals("Basic d2s6", seen.header("Authorization"))
            }
        },
        TestCase("transport: a redirect is returned, not followed") {
            RawServer().use { server ->
                server.reply(RawServer.status(302, "Location: ${server.endpoint}/elsewhere"))
                val response = HttpTransport().send(request("${server.endpoint}/v1/batch"))
                assertEquals(302, response.status.toInt())
                Thread.sleep(200)
                assertEquals(listOf("/v1/batch"), server.requests.map { it.path })
            }
        },
        TestCase("transport: a cut connection is a TransportException, not a crash") {
            RawServer().use { server ->
                server.reply(null)
                assertFailsWith<TransportException> {
                    HttpTransport().send(request("${server.endpoint}/v1/batch"))
                }
            }
            // Nothing listening at all.
            val port = ServerSocket(0).use { it.localPort }
            assertFailsWith<TransportException> { HttpTransport().send(request("http://127.0.0.1:$port/v1/batch")) }
        },
        TestCase("transport: through the client, a cut connection and Retry-After are retried under the same key") {
            RawServer().use { server ->
                server.reply(null, RawServer.status(503, "Retry-After: 1"))
                withTributary(server) { client ->
                    client.track("Checkout", mapOf("total" to 3))
                    assertEquals(FlushResult.Delivered, client.flushBlocking(20_000))
                    val seen = server.requests.toList()
                    assertEquals(3, seen.size)
                    assertEquals(1, seen.map { it.header("Idempotency-Key") }.toSet().size)
                    val waitedMs = (seen[2].atNanos - seen[1].atNanos) / 1_000_000
                    assertTrue(waitedMs >= 950, "Retry-After honoured, waited $waitedMs ms")
                    assertEquals("Checkout", seen[2].events().single()["event"])
                    assertEquals(2L, client.stats().retries)
                }
            }
        },
        TestCase("transport: through the client, a redirect is never followed") {
            RawServer().use { server ->
                server.reply(RawServer.status(307, "Location: /elsewhere"))
                withTributary(server) { client ->
                    client.track("E")
                    assertEquals(FlushResult.Delivered, client.flushBlocking(20_000))
                    assertEquals(listOf("/v1/batch", "/v1/batch"), server.requests.map { it.path })
                }
            }
        },
        TestCase("profile: super-properties, traits, session and per-call options reach the server") {
            RawServer().use { server ->
                withTributary(server) { client ->
                    client.register(mapOf("plan" to "pro", "build" to 1))
                    client.unregister("build")
                    client.identify("u1", mapOf("email" to "a@example.com"))
                    client.appBackgrounded()
                    client.appForegrounded()
                    client.track("A", mapOf("x" to 1))
                    client.page(
                        "Pricing",
                        options = EventOptions(
                            timestampMs = 1_700_000_000_123,
                            context = mapOf("ip" to "0.0.0.0"),
                            integrations = mapOf("All" to false),
                        ),
                    )
                    assertEquals(FlushResult.Delivered, client.flushBlocking(20_000))
                    val events = server.requests.flatMap { it.events() }
                    assertEquals(3, events.size)
                    @Suppress("UNCHECKED_CAST")
                    val ctx = { i: Int -> events[i]["context"] as Map<String, Any?> }
                    assertEquals(mapOf("plan" to "pro", "x" to 1L), events[1]["properties"].let(::numbersAsLong))
                    assertEquals(mapOf("email" to "a@example.com"), ctx(1)["traits"])
                    assertEquals(client.sessionId, (ctx(1)["sessionId"] as Number).toLong())
                    assertEquals("page", events[2]["type"])
                    assertEquals("2023-11-14T22:13:20.123Z", events[2]["timestamp"])
                    assertEquals("0.0.0.0", ctx(2)["ip"])
                    assertEquals(mapOf("All" to false), events[2]["integrations"])
                    assertEquals("{\"plan\":\"pro\"}", client.superPropertiesJson)
                    client.reset()
                    assertEquals("{}", client.traitsJson)
                }
            }
        },
    )

    @Suppress("UNCHECKED_CAST")
    private fun numbersAsLong(value: Any?): Map<String, Any?> =
        (value as Map<String, Any?>).mapValues { (_, v) -> if (v is Number) v.toLong() else v }
}
