package dev.tributary.tests

import com.sun.net.httpserver.HttpServer
import java.net.InetSocketAddress
import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.Executors
import java.util.zip.GZIPInputStream

/** One request as the server saw it. */
class ReceivedBatch(
    val authorization: String?,
    val contentEncoding: String?,
    val idempotencyKey: String?,
    val body: Map<String, Any?>,
) {
    @Suppress("UNCHECKED_CAST")
    val events: List<Map<String, Any?>> get() = body["batch"] as List<Map<String, Any?>>
}

/**
 * A real HTTP collector on 127.0.0.1 (the JDK's HttpServer): gunzips and parses
 * each `/v1/batch` body, records it, and answers 200 (or the statuses queued in
 * [failNext] first).
 */
class TestServer : AutoCloseable {
    private val server: HttpServer = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
    private val requests = ConcurrentLinkedQueue<ReceivedBatch>()
    private val failures = ConcurrentLinkedQueue<Int>()
    private val workers = Executors.newFixedThreadPool(4) { r -> Thread(r, "test-server").apply { isDaemon = true } }

    val endpoint: String get() = "http://127.0.0.1:${server.address.port}"

    init {
        server.createContext("/v1/batch") { ex ->
            try {
                val raw = ex.requestBody.readBytes()
                val encoding = ex.requestHeaders.getFirst("Content-Encoding")
                val bytes = if (encoding == "gzip") GZIPInputStream(raw.inputStream()).readBytes() else raw
                val status = failures.poll() ?: 200
                if (status == 200) {
                    @Suppress("UNCHECKED_CAST")
                    val body = MiniJson.parse(bytes.toString(Charsets.UTF_8)) as Map<String, Any?>
                    requests.add(
                        ReceivedBatch(
                            ex.requestHeaders.getFirst("Authorization"),
                            encoding,
                            ex.requestHeaders.getFirst("Idempotency-Key"),
                            body,
                        ),
                    )
                }
                val reply = if (status == 200) "{\"success\":true}" else "{\"error\":\"test failure\"}"
                val out = reply.toByteArray()
                ex.responseHeaders.add("Content-Type", "application/json")
                ex.sendResponseHeaders(status, out.size.toLong())
                ex.responseBody.use { it.write(out) }
            } catch (e: Exception) {
                e.printStackTrace()
                ex.sendResponseHeaders(500, -1)
            } finally {
                ex.close()
            }
        }
        server.executor = workers
        server.start()
    }

    /** Answers the next requests with these statuses (without recording them). */
    fun failNext(vararg statuses: Int) {
        statuses.forEach { failures.add(it) }
    }

    /** Every accepted batch so far. */
    fun batches(): List<ReceivedBatch> = requests.toList()

    /** Every event of every accepted batch, in arrival order (duplicates kept). */
    fun events(): List<Map<String, Any?>> = batches().flatMap { it.events }

    override fun close() {
        server.stop(0)
        workers.shutdownNow()
    }
}
