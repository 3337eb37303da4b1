package dev.tributary

import java.io.File

/**
 * Device and app details for every event's `context`, with plain Java types (no
 * unsigned numbers). Every field is optional; [Tributary.setup] collects them itself.
 */
data class AppContext @JvmOverloads constructor(
    val appName: String? = null,
    val appVersion: String? = null,
    val appBuild: String? = null,
    val appNamespace: String? = null,
    val deviceManufacturer: String? = null,
    val deviceModel: String? = null,
    val deviceType: String? = null,
    val osName: String? = null,
    val osVersion: String? = null,
    val locale: String? = null,
    val timezone: String? = null,
    val networkWifi: Boolean? = null,
    val networkCellular: Boolean? = null,
    val networkCarrier: String? = null,
    val screenWidth: Int? = null,
    val screenHeight: Int? = null,
    val screenDensity: Double? = null,
) {
    internal fun lower(): dev.tributary.ffi.DeviceContext = dev.tributary.ffi.DeviceContext(
        appName = appName, appVersion = appVersion, appBuild = appBuild, appNamespace = appNamespace,
        deviceManufacturer = deviceManufacturer, deviceModel = deviceModel, deviceType = deviceType,
        osName = osName, osVersion = osVersion, locale = locale, timezone = timezone,
        networkWifi = networkWifi, networkCellular = networkCellular, networkCarrier = networkCarrier,
        screenWidth = screenWidth?.takeIf { it >= 0 }?.toUInt(),
        screenHeight = screenHeight?.takeIf { it >= 0 }?.toUInt(),
        screenDensity = screenDensity,
    )
}

/** Where the automatic context comes from (Android: `Build`, `PackageManager`, …). */
fun interface ContextSource {
    /** The current details; called at setup and whenever [Platform] reports a change. */
    fun collect(): AppContext
}

/** Reports whether a validated network is available. */
interface Connectivity {
    /** Starts reporting; [onChange] is called with the current state and every change. */
    fun start(onChange: (online: Boolean) -> Unit)

    /** Stops reporting. */
    fun stop()
}

/** Reports the app going to the foreground and the background. */
interface AppLifecycle {
    /** Starts reporting to [listener]. */
    fun start(listener: Listener)

    /** Stops reporting. */
    fun stop()

    /** What the lifecycle reports. */
    interface Listener {
        /** The first activity started (the app is visible). */
        fun onForeground()

        /** The last activity stopped (the app is in the background). */
        fun onBackground()
    }
}

/**
 * Schedules an upload that runs even if the process is gone by then (Android:
 * JobScheduler with a network constraint). [schedule] is called when the app goes to
 * the background with events queued; the job calls [Tributary.runScheduledUpload].
 */
interface UploadScheduler {
    /** Schedules one upload when a network is available; replaces any pending one. */
    fun schedule()

    /** Cancels the pending upload, if any. */
    fun cancel()
}

/** The platform hooks [Tributary.setup] registers; any of them may be absent. */
class Platform @JvmOverloads constructor(
    val storageDir: File,
    val context: ContextSource? = null,
    val connectivity: Connectivity? = null,
    val lifecycle: AppLifecycle? = null,
    val scheduler: UploadScheduler? = null,
)

/**
 * The settings of [Tributary.setup], Java-friendly: plain `Int`/`Long`, setters that
 * chain. Defaults suit most apps.
 */
class Options {
    /** Upload once this many events are queued. */
    var flushAt: Int = 20

    /** Upload at least this often while events are queued. */
    var flushIntervalMs: Long = 30_000

    /** Most bytes queued on disk; the oldest events are evicted past it (counted). */
    var maxQueueBytes: Long = 20_000_000

    /** A session ends after this long in the background. */
    var sessionTimeoutMs: Long = 30 * 60 * 1000

    /**
     * Record Segment's lifecycle events: `Application Installed`, `Application Updated`,
     * `Application Opened` and `Application Backgrounded`.
     */
    var trackLifecycleEvents: Boolean = false

    /** Receives the SDK's log; `null` for silence. */
    var logger: Logger? = Logger.platform()

    /**
     * Schedules the background upload instead of the platform's default (JobScheduler on
     * Android), e.g. a WorkManager-based one; null keeps the default.
     */
    var uploadScheduler: UploadScheduler? = null

    /** Chaining setter for Java. */
    fun uploadScheduler(value: UploadScheduler?) = apply { uploadScheduler = value }

    /** Sends the uploads; [HttpTransport] (HttpURLConnection) by default. */
    var transport: Transport = HttpTransport()

    /** Chaining setter for Java: `new Options().flushAt(10).trackLifecycleEvents(true)`. */
    fun flushAt(value: Int) = apply { flushAt = value }

    /** Chaining setter for Java. */
    fun flushIntervalMs(value: Long) = apply { flushIntervalMs = value }

    /** Chaining setter for Java. */
    fun maxQueueBytes(value: Long) = apply { maxQueueBytes = value }

    /** Chaining setter for Java. */
    fun sessionTimeoutMs(value: Long) = apply { sessionTimeoutMs = value }

    /** Chaining setter for Java. */
    fun trackLifecycleEvents(value: Boolean) = apply { trackLifecycleEvents = value }

    /** Chaining setter for Java. */
    fun logger(value: Logger?) = apply { logger = value }

    /** Chaining setter for Java. */
    fun transport(value: Transport) = apply { transport = value }

    internal fun config(endpoint: String, writeKey: String, storageDir: File): TributaryConfig {
        require(flushAt > 0) { "flushAt must be at least 1, got $flushAt" }
        require(flushIntervalMs > 0) { "flushIntervalMs must be at least 1, got $flushIntervalMs" }
        require(maxQueueBytes > 0) { "maxQueueBytes must be at least 1, got $maxQueueBytes" }
        require(sessionTimeoutMs > 0) { "sessionTimeoutMs must be at least 1, got $sessionTimeoutMs" }
        return TributaryConfig(
            endpoint = endpoint,
            writeKey = writeKey,
            storageDir = storageDir.absolutePath,
            flushAt = flushAt,
            flushIntervalMs = flushIntervalMs,
            maxQueueBytes = maxQueueBytes,
            sessionTimeoutMs = sessionTimeoutMs,
        )
    }
}

/**
 * Wires the platform hooks to a client: connectivity to `setNetworkAvailable`, the
 * lifecycle to sessions, flushes, the upload scheduler and the optional lifecycle
 * events, and the context source to `setContext`. Plain logic over interfaces, so it
 * runs (and is tested) on the JVM.
 */
internal class PlatformHooks(
    private val tributary: Tributary,
    private val platform: Platform,
    private val trackLifecycleEvents: Boolean,
) : AppLifecycle.Listener {
    @Volatile private var foregroundedOnce = false

    /**
     * Runs the lifecycle work in order, off the caller's (main) thread: the core's install
     * check may wait for its state file, and `Application Installed` must come before
     * `Application Opened`.
     */
    private val worker = java.util.concurrent.Executors.newSingleThreadExecutor { r ->
        Thread(r, "tributary-hooks").apply { isDaemon = true }
    }

    private fun later(body: () -> Unit) {
        try {
            worker.execute {
                try {
                    body()
                } catch (e: Exception) {
                    // Lifecycle bookkeeping must never crash the app.
                }
            }
        } catch (e: java.util.concurrent.RejectedExecutionException) {
            // Stopped: the client is shutting down.
        }
    }

    /** Waits up to [timeoutMs] for the lifecycle work queued so far (tests, the upload job). */
    fun awaitIdle(timeoutMs: Long) {
        try {
            worker.submit {}.get(timeoutMs, java.util.concurrent.TimeUnit.MILLISECONDS)
        } catch (e: Exception) {
            // Stopped or timed out: nothing more to wait for.
        }
    }

    fun start() {
        refreshContext()
        later { reportLaunch() }
        platform.connectivity?.start { online ->
            tributary.setNetworkAvailable(online)
            // The network type may have changed (Wi-Fi, cellular).
            refreshContext()
        }
        platform.lifecycle?.start(this)
    }

    fun stop() {
        platform.connectivity?.stop()
        platform.lifecycle?.stop()
        worker.shutdown()
    }

    fun refreshContext() {
        val source = platform.context ?: return
        try {
            tributary.setContext(source.collect())
        } catch (e: Exception) {
            // A context source must never break the app; the events go without it.
        }
    }

    override fun onForeground() {
        // The session first, on the caller's thread: events tracked right after belong to it.
        tributary.appForegrounded()
        later {
            refreshContext() // locale, time zone or screen may have changed while away
            platform.scheduler?.cancel()
            if (trackLifecycleEvents) {
                tributary.track("Application Opened", mapOf("from_background" to foregroundedOnce))
            }
            foregroundedOnce = true
        }
    }

    override fun onBackground() {
        later {
            if (trackLifecycleEvents) tributary.track("Application Backgrounded")
            tributary.appBackgrounded()
            tributary.flush()
            platform.scheduler?.schedule()
        }
    }

    /**
     * Reports the app's version to the core, which tells an install from an update
     * (against its state file) and records `Application Installed`/`Updated` when
     * lifecycle events are on. On the hook thread: the core may wait briefly for its state file.
     */
    private fun reportLaunch() {
        val context = platform.context?.let { runCatching { it.collect() }.getOrNull() } ?: return
        val version = context.appVersion ?: return
        tributary.appLaunched(version, context.appBuild, trackLifecycleEvents)
    }
}
