package dev.tributary.tests

import dev.tributary.AppContext
import dev.tributary.AppLifecycle
import dev.tributary.Connectivity
import dev.tributary.ContextSource
import dev.tributary.FlushResult
import dev.tributary.Options
import dev.tributary.Platform
import dev.tributary.Tributary
import dev.tributary.UploadScheduler
import java.io.File
import java.nio.file.Files
import java.util.concurrent.atomic.AtomicInteger
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

/** Stands in for ConnectivityManager: the test decides when the network comes and goes. */
class ScriptedConnectivity : Connectivity {
    var onChange: ((Boolean) -> Unit)? = null
    override fun start(onChange: (online: Boolean) -> Unit) {
        this.onChange = onChange
        onChange(true)
    }
    override fun stop() {
        onChange = null
    }
}

/** Stands in for the activity lifecycle callbacks. */
class ScriptedLifecycle : AppLifecycle {
    var listener: AppLifecycle.Listener? = null
    override fun start(listener: AppLifecycle.Listener) {
        this.listener = listener
    }
    override fun stop() {
        listener = null
    }
}

/** Stands in for JobScheduler: counts what was asked. */
class CountingScheduler : UploadScheduler {
    val scheduled = AtomicInteger()
    val cancelled = AtomicInteger()
    override fun schedule() {
        scheduled.incrementAndGet()
    }
    override fun cancel() {
        cancelled.incrementAndGet()
    }
}

private fun appContext(version: String) = AppContext(
    appName = "Shop", appVersion = version, appBuild = "7", appNamespace = "com.example.shop",
    deviceManufacturer = "Google", deviceModel = "Pixel 8", deviceType = "android",
    osName = "Android", osVersion = "14", locale = "fr-FR", timezone = "Europe/Paris",
    networkWifi = true, networkCellular = false, screenWidth = 1080, screenHeight = 2400, screenDensity = 2.625,
)

private fun <T> tempDir(body: (File) -> T): T {
    val dir = Files.createTempDirectory("tributary-platform").toFile()
    try {
        return body(dir)
    } finally {
        dir.deleteRecursively()
    }
}

private fun poll(timeoutMs: Long, condition: () -> Boolean): Boolean {
    val deadline = System.currentTimeMillis() + timeoutMs
    while (System.currentTimeMillis() < deadline) {
        if (condition()) return true
        Thread.sleep(20)
    }
    return condition()
}

private fun options() = Options().apply {
    flushAt = 1000
    flushIntervalMs = 3_600_000
    trackLifecycleEvents = true
    logger = null
}

object PlatformTests {
    fun cases() = listOf(
        TestCase("setup: connectivity drives uploads, the lifecycle flushes and schedules, context is collected") {
            TestServer().use { server ->
                tempDir { dir ->
                    val connectivity = ScriptedConnectivity()
                    val lifecycle = ScriptedLifecycle()
                    val scheduler = CountingScheduler()
                    val platform = Platform(dir, { appContext("1.0") }, connectivity, lifecycle, scheduler)
                    val tributary = Tributary.setup(platform, "wk", server.endpoint) {
                        flushAt = 1000
                        flushIntervalMs = 3_600_000
                        trackLifecycleEvents = true
                        logger = null
                    }
                    try {
                        assertTrue(Tributary.shared === tributary)
                        val listener = assertNotNull(lifecycle.listener, "lifecycle hooked")
                        listener.onForeground()
                        // The lifecycle work runs in order on the SDK's hook thread.
                        tributary.hooks!!.awaitIdle(5_000)
                        tributary.track("Viewed", mapOf("n" to 1))
                        assertNotNull(connectivity.onChange)!!(false)
                        assertIs<FlushResult.Offline>(tributary.flushBlocking(2_000))
                        assertEquals(0, server.events().size, "nothing sent while offline")
                        connectivity.onChange!!(true)
                        listener.onBackground()
                        tributary.hooks!!.awaitIdle(5_000)
                        assertEquals(1, scheduler.scheduled.get())
                        // Going to the background asked for an upload: no flushBlocking needed.
                        assertTrue(poll(10_000) { server.events().any { it["event"] == "Application Backgrounded" } })
                        listener.onForeground()
                        tributary.hooks!!.awaitIdle(5_000)
                        assertEquals(2, scheduler.cancelled.get(), "each foreground cancels the pending job")
                        assertEquals(FlushResult.Delivered, tributary.flushBlocking(10_000))
                        val events = server.events()
                        val names = events.map { it["event"] }
                        assertEquals(
                            listOf("Application Installed", "Application Opened", "Viewed", "Application Backgrounded", "Application Opened"),
                            names,
                        )
                        assertEquals(mapOf("from_background" to false), events[1]["properties"])
                        assertEquals(mapOf("from_background" to true), events[4]["properties"])
                        @Suppress("UNCHECKED_CAST")
                        val ctx = events[2]["context"] as Map<String, Any?>
                        assertEquals(mapOf("name" to "Shop", "version" to "1.0", "build" to "7", "namespace" to "com.example.shop"), ctx["app"])
                        assertEquals(mapOf("manufacturer" to "Google", "model" to "Pixel 8", "type" to "android"), ctx["device"])
                        assertEquals(mapOf("width" to 1080L, "height" to 2400L, "density" to 2.625), ctx["screen"])
                        assertEquals(mapOf("wifi" to true, "cellular" to false), ctx["network"])
                        assertEquals("fr-FR", ctx["locale"])
                        assertEquals("Europe/Paris", ctx["timezone"])
                        val sessions = events.map { (it["context"] as Map<*, *>)["sessionId"] }.toSet()
                        assertEquals(1, sessions.size, "back within 30 minutes: one session")
                    } finally {
                        tributary.shutdown(0)
                    }
                    assertEquals(null, lifecycle.listener, "shutdown unregisters the hooks")
                }
            }
        },
        TestCase("setup: Application Installed once, then Updated when the version changes") {
            TestServer().use { server ->
                tempDir { dir ->
                    fun run(version: String): List<Map<String, Any?>> {
                        val before = server.events().size
                        val t = Tributary.setup(Platform(dir, { appContext(version) }), "wk", server.endpoint, options())
                        try {
                            // The check runs off the caller's thread.
                            t.hooks!!.awaitIdle(5_000)
                            assertEquals(FlushResult.Delivered, t.flushBlocking(10_000))
                        } finally {
                            t.shutdown(0)
                        }
                        return server.events().drop(before)
                    }
                    assertEquals(listOf("Application Installed"), run("1.0").map { it["event"] })
                    assertEquals(emptyList(), run("1.0").map { it["event"] })
                    val updated = run("1.1")
                    assertEquals(listOf("Application Updated"), updated.map { it["event"] })
                    assertEquals(
                        mapOf("previous_version" to "1.0", "previous_build" to "7", "version" to "1.1", "build" to "7"),
                        updated[0]["properties"],
                    )
                }
            }
        },
        TestCase("setup: a context source that throws does not break setup or recording") {
            TestServer().use { server ->
                tempDir { dir ->
                    val t = Tributary.setup(Platform(dir, { throw IllegalStateException("no PackageManager") }), "wk", server.endpoint, options())
                    try {
                        t.track("Still works")
                        assertEquals(FlushResult.Delivered, t.flushBlocking(10_000))
                        assertEquals(listOf("Still works"), server.events().map { it["event"] })
                    } finally {
                        t.shutdown(0)
                    }
                }
            }
        },
    )
}
