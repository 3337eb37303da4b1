package dev.tributary.tests

import dev.tributary.FlushResult
import dev.tributary.LogLevel
import dev.tributary.Logger
import dev.tributary.Tributary
import dev.tributary.TributaryConfig
import dev.tributary.ffi.TributaryException
import java.io.File
import java.math.BigDecimal
import java.nio.file.Files
import java.util.Base64
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicReference
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertFailsWith
import kotlin.test.assertIs
import kotlin.test.assertNotEquals
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

private const val WRITE_KEY = "wk_kotlin_test"

/** Generous bound for a flush over loopback; only a broken core ever reaches it. */
private const val FLUSH_TIMEOUT_MS = 30_000L

/** A config with quick timers, so the tests spend their time testing. */
private fun testConfig(endpoint: String, dir: File, flushAt: Int = 20) = TributaryConfig(
    endpoint = endpoint,
    writeKey = WRITE_KEY,
    storageDir = dir.absolutePath,
    flushAt = flushAt,
    flushIntervalMs = 200L,
    retryBaseDelayMs = 20L,
    retryMaxDelayMs = 200L,
    connectTimeoutMs = 2_000L,
    requestTimeoutMs = 10_000L,
)

private fun <T> withTempDir(body: (File) -> T): T {
    val dir = Files.createTempDirectory("tributary-kotlin").toFile()
    try {
        return body(dir)
    } finally {
        dir.deleteRecursively()
    }
}

/** Runs [body] with a server and a client on a fresh directory, always shutting both down. */
private fun withClient(logger: Logger? = null, flushAt: Int = 20, body: (TestServer, Tributary, File) -> Unit) {
    TestServer().use { server ->
        withTempDir { dir ->
            val client = Tributary(testConfig(server.endpoint, dir, flushAt), logger)
            try {
                body(server, client, dir)
            } finally {
                client.shutdown(0)
            }
        }
    }
}

@Suppress("UNCHECKED_CAST")
private fun Map<String, Any?>.obj(key: String) = this[key] as Map<String, Any?>

/** The Rust core through the Kotlin API, against a real HTTP server on loopback. */
object ClientTests {
    fun cases() = listOf(
        TestCase("client: track round trip to a local HTTP server") { roundTrip() },
        TestCase("client: properties of every JSON type arrive intact") { everyJsonType() },
        TestCase("client: identify, screen, group, alias, reset") { identityCalls() },
        TestCase("client: invalid config arrives as TributaryException.InvalidConfig") { invalidConfig() },
        TestCase("client: a too large event is dropped, logged and counted, not thrown") { tooLarge() },
        TestCase("client: unusable or taken storage is reported, not thrown, and waited for") { storageErrors() },
        TestCase("client: recording after shutdown does not throw; dropped, logged and counted") { afterShutdown() },
        TestCase("client: values JSON cannot hold are converted, not refused") { kotlinSideErrors() },
        TestCase("client: logger is called from Rust threads; a throwing logger is harmless") { loggerThreads() },
        TestCase("client: 8 threads recording at once, each event delivered exactly once") { eightThreads() },
        TestCase("client: restart with pending data delivers it") { restart() },
        TestCase("client: server errors are retried, then delivered once") { retries() },
        TestCase("client: optOut drops and refuses events, optIn resumes") { optOutIn() },
    )

    private fun roundTrip() = withClient { server, client, _ ->
        client.track("Signed Up", mapOf("plan" to "pro"))
        client.track("Opened")
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        val events = server.events()
        assertEquals(listOf("Signed Up", "Opened"), events.map { it["event"] })
        assertTrue(events.all { it["type"] == "track" })
        assertEquals("pro", events[0].obj("properties")["plan"])
        assertEquals(emptyMap<String, Any?>(), events[1].obj("properties"))
        val ids = events.map { it["messageId"] as String }
        assertEquals(2, ids.toSet().size, "messageIds must be distinct: $ids")
        assertTrue(events.all { it["anonymousId"] == client.anonymousId })
        val library = events[0].obj("context").obj("library")
        assertEquals("tributary-kotlin", library["name"])
        val batch = server.batches().first()
        val basic = "Basic " + Base64.getEncoder().encodeToString("$WRITE_KEY:".toByteArray())
        assertEquals(basic, batch.authorization)
        assertEquals("gzip", batch.contentEncoding)
        assertNotNull(batch.idempotencyKey)
        val stats = client.stats()
        assertEquals(2L, stats.uploadedEvents)
        assertEquals(0L, stats.queuedEvents)
    }

    private fun everyJsonType() = withClient { server, client, _ ->
        val properties = mapOf(
            "string" to "héllo \"quoted\" back\\slash\nnew line\ttab \u0001",
            "unicode" to "日本語 😀",
            "int" to 42,
            "long" to (1L shl 53),
            "negative" to -7,
            "double" to 3.25,
            "float" to 0.5f,
            "bigDecimal" to BigDecimal("12345.678"),
            "true" to true,
            "false" to false,
            "null" to null,
            "list" to listOf(1, "a", null, listOf(2.5), mapOf("in" to "list")),
            "array" to arrayOf("x", "y"),
            "map" to mapOf("k" to mapOf("deep" to listOf(mapOf("x" to 1)))),
            "emptyList" to emptyList<Any>(),
            "emptyMap" to emptyMap<String, Any>(),
        )
        client.track("Types", properties)
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        val got = server.events().single().obj("properties")
        val expected = mapOf(
            "string" to properties["string"],
            "unicode" to "日本語 😀",
            "int" to 42L,
            "long" to (1L shl 53),
            "negative" to -7L,
            "double" to 3.25,
            "float" to 0.5,
            "bigDecimal" to 12345.678,
            "true" to true,
            "false" to false,
            "null" to null,
            "list" to listOf(1L, "a", null, listOf(2.5), mapOf("in" to "list")),
            "array" to listOf("x", "y"),
            "map" to mapOf("k" to mapOf("deep" to listOf(mapOf("x" to 1L)))),
            "emptyList" to emptyList<Any>(),
            "emptyMap" to emptyMap<String, Any>(),
        )
        assertEquals(expected, got)
    }

    private fun identityCalls() = withClient { server, client, _ ->
        val anonymous = client.anonymousId
        assertTrue(anonymous.isNotEmpty())
        assertNull(client.userId)
        client.identify("user-1", mapOf("email" to "a@example.com", "age" to 30))
        client.screen("Home", mapOf("from" to "push"))
        client.group("acme", mapOf("seats" to 3))
        client.alias("user-2")
        assertEquals("user-2", client.userId)
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        val events = server.events()
        assertEquals(listOf("identify", "screen", "group", "alias"), events.map { it["type"] })
        val (identify, screen, group, alias) = events
        assertEquals("user-1", identify["userId"])
        assertEquals(mapOf("email" to "a@example.com", "age" to 30L), identify.obj("traits"))
        assertEquals("Home", screen["name"])
        assertEquals("user-1", screen["userId"])
        assertEquals("push", screen.obj("properties")["from"])
        assertEquals("acme", group["groupId"])
        assertEquals(3L, group.obj("traits")["seats"])
        assertEquals("user-2", alias["userId"])
        assertEquals("user-1", alias["previousId"])
        assertTrue(events.all { it["anonymousId"] == anonymous })
        client.reset()
        assertNull(client.userId)
        assertNotEquals(anonymous, client.anonymousId)
    }

    private fun invalidConfig() = withTempDir { dir ->
        val badEndpoint = assertFailsWith<TributaryException.InvalidConfig> {
            Tributary(testConfig("ftp://example.com", dir), null)
        }
        assertTrue(badEndpoint.message!!.contains("endpoint"), badEndpoint.message)
        assertTrue(badEndpoint.message!!.contains("http://"), badEndpoint.message)
        val noKey = assertFailsWith<TributaryException> {
            Tributary("http://127.0.0.1:9", " ", dir, logger = null)
        }
        assertTrue(noKey is TributaryException.InvalidConfig)
        assertTrue(noKey.message!!.contains("write_key"), noKey.message)
        // Checked on the Kotlin side: a negative Int must not wrap into a huge UInt.
        assertFailsWith<IllegalArgumentException> {
            Tributary("http://127.0.0.1:9", "k", dir, flushAt = -1, logger = null)
        }
    }

    private fun tooLarge() = TestServer().use { server ->
        withTempDir { dir ->
            val lines = CopyOnWriteArrayList<String>()
            val logger = Logger { level, message -> lines.add("$level $message") }
            val client = Tributary(testConfig(server.endpoint, dir).copy(maxEventBytes = 1_024L), logger)
            try {
                // Returns normally: the app is never interrupted by analytics.
                client.track("Big", mapOf("blob" to "x".repeat(5_000)))
                assertEquals(1L, client.stats().droppedTooLarge)
                assertTrue(lines.any { it.startsWith("WARN") && it.contains("max_event_bytes") }, "$lines")
                client.track("Small")
                assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
                assertEquals(listOf("Small"), server.events().map { it["event"] })
            } finally {
                client.shutdown(0)
            }
        }
    }

    private fun storageErrors() = withTempDir { dir ->
        // The constructor touches no file: storage problems are reported, not thrown.
        val file = File(dir, "not-a-dir").apply { writeText("x") }
        val broken = Tributary(testConfig("http://127.0.0.1:9", file), null)
        try {
            assertFalse(broken.awaitReady(300))
            val why = broken.stats().lastError ?: ""
            assertTrue(why.contains(file.path), why)
        } finally {
            broken.shutdown(0)
        }
        val first = Tributary(testConfig("http://127.0.0.1:9", dir), null)
        assertTrue(first.awaitReady(10_000))
        val second = Tributary(testConfig("http://127.0.0.1:9", dir), null)
        try {
            assertFalse(second.awaitReady(300))
            val why = second.stats().lastError ?: ""
            assertTrue(why.contains("another"), why)
            // Shutting the first one down releases the directory to the second.
            first.shutdown(0)
            assertTrue(second.awaitReady(10_000))
        } finally {
            first.shutdown(0)
            second.shutdown(0)
        }
    }

    private fun afterShutdown() {
        val lines = CopyOnWriteArrayList<String>()
        val logger = Logger { level, message -> lines.add("$level $message") }
        withClient(logger) { _, client, _ ->
            client.shutdown(0)
            client.track("Late")
            client.identify("u")
            client.screen("S")
            client.group("g")
            client.alias("a")
            client.page("P")
            assertEquals(6L, client.stats().droppedShutdown)
            assertTrue(lines.count { it.startsWith("WARN") && it.contains("after shutdown") } == 6, "$lines")
        }
    }

    private fun kotlinSideErrors() = withClient { server, client, _ ->
        client.track("Odd", mapOf("price" to Double.POSITIVE_INFINITY, "who" to Thread.currentThread()))
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        val props = server.events().single().obj("properties")
        assertTrue(props.containsKey("price") && props["price"] == null, "$props")
        assertEquals(Thread.currentThread().toString(), props["who"])
    }

    private fun loggerThreads() {
        val caller = Thread.currentThread()
        val calls = CopyOnWriteArrayList<Pair<Thread, String>>()
        val logger = Logger { level, message -> calls.add(Thread.currentThread() to "$level $message") }
        withClient(logger) { _, client, _ ->
            client.track("Logged")
            assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        }
        assertTrue(calls.isNotEmpty(), "the core logged nothing during a start, an upload and a shutdown")
        val fromRust = calls.filter { it.first != caller }
        assertTrue(fromRust.isNotEmpty(), "no log call came from a Rust thread: $calls")
        assertTrue(calls.all { it.second.isNotBlank() })

        // A logger that always throws must not disturb delivery.
        val thrown = AtomicReference<Int>(0)
        val throwing = Logger { _, _ ->
            thrown.updateAndGet { it + 1 }
            throw IllegalStateException("logger failure (expected by the test)")
        }
        withClient(throwing) { server, client, _ ->
            client.track("Still delivered")
            assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
            assertEquals(listOf("Still delivered"), server.events().map { it["event"] })
        }
        assertTrue(thrown.get() > 0, "the throwing logger was never called")
    }

    private fun eightThreads() = withClient(flushAt = 100) { server, client, _ ->
        val threads = 8
        val perThread = 250
        val start = CountDownLatch(1)
        val errors = CopyOnWriteArrayList<Throwable>()
        val workers = (0 until threads).map { t ->
            Thread({
                try {
                    start.await()
                    for (i in 0 until perThread) {
                        client.track("Concurrent", mapOf("thread" to t, "seq" to i))
                    }
                } catch (e: Throwable) {
                    errors.add(e)
                }
            }, "recorder-$t")
        }
        workers.forEach { it.start() }
        start.countDown()
        workers.forEach { it.join() }
        assertEquals(emptyList(), errors.toList())
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        val events = server.events()
        assertEquals(threads * perThread, events.size, "events received (duplicates count twice)")
        assertEquals(threads * perThread, events.map { it["messageId"] }.toSet().size)
        val keys = events.map { it.obj("properties").let { p -> p["thread"] to p["seq"] } }.toSet()
        val expected = (0 until threads).flatMap { t -> (0 until perThread).map { t.toLong() to it.toLong() } }.toSet()
        assertEquals(expected, keys)
        assertEquals((threads * perThread).toLong(), client.stats().uploadedEvents)
    }

    private fun restart() = TestServer().use { server ->
        withTempDir { dir ->
            val first = Tributary(testConfig(server.endpoint, dir), null)
            first.setNetworkAvailable(false)
            val names = (1..5).map { "Offline $it" }
            names.forEach { first.track(it) }
            val offline = assertIs<FlushResult.Offline>(first.flushBlocking(FLUSH_TIMEOUT_MS))
            assertEquals(5L, offline.pending)
            first.shutdown(0)
            assertEquals(0, server.events().size, "nothing may be sent while offline")

            val second = Tributary(testConfig(server.endpoint, dir), null)
            try {
                // The database is opened on the SDK's thread, not in the constructor.
                assertTrue(second.awaitReady(FLUSH_TIMEOUT_MS))
                assertEquals(5L, second.stats().queuedEvents)
                assertEquals(FlushResult.Delivered, second.flushBlocking(FLUSH_TIMEOUT_MS))
                val events = server.events()
                assertEquals(names, events.map { it["event"] })
                assertEquals(5, events.map { it["messageId"] }.toSet().size)
            } finally {
                second.shutdown(0)
            }
        }
    }

    private fun retries() = withClient { server, client, _ ->
        server.failNext(500, 503)
        (1..3).forEach { client.track("Retried $it") }
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        assertEquals((1..3).map { "Retried $it" }, server.events().map { it["event"] })
        assertTrue(client.stats().retries >= 2L, "retries: ${client.stats().retries}")
    }

    private fun optOutIn() = withClient { server, client, _ ->
        client.setNetworkAvailable(false)
        client.track("Queued then deleted")
        client.optOut()
        client.track("While opted out")
        assertEquals(FlushResult.Disabled, client.flushBlocking(FLUSH_TIMEOUT_MS))
        // Opting out takes effect at once; the deletion runs on the SDK's thread.
        val deadline = System.nanoTime() + FLUSH_TIMEOUT_MS * 1_000_000
        while (client.stats().queuedEvents != 0L && System.nanoTime() < deadline) Thread.sleep(10)
        assertEquals(0L, client.stats().queuedEvents)
        client.optIn()
        client.setNetworkAvailable(true)
        client.track("After opt in")
        assertEquals(FlushResult.Delivered, client.flushBlocking(FLUSH_TIMEOUT_MS))
        assertEquals(listOf("After opt in"), server.events().map { it["event"] })
    }
}
