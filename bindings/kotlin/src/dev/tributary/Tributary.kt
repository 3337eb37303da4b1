package dev.tributary

import dev.tributary.ffi.Client
import java.io.File

/** How [Tributary.flushBlocking] or [Tributary.shutdown] ended. */
sealed class FlushResult {
    /** Every event recorded before the call was acknowledged by the server. */
    data object Delivered : FlushResult()

    /** The timeout elapsed first; [pending] events are durable on disk. */
    data class TimedOut(val pending: Long) : FlushResult()

    /** The network is marked unavailable; [pending] events are durable on disk. */
    data class Offline(val pending: Long) : FlushResult()

    /** The server refused the write key (401/403); uploads wait for [Tributary.setWriteKey] or a restart. */
    data class Unauthorized(val pending: Long) : FlushResult()

    /** Recording is disabled ([Tributary.optOut]); nothing is queued. */
    data object Disabled : FlushResult()

    internal companion object {
        fun from(result: dev.tributary.ffi.FlushResult): FlushResult = when (result) {
            is dev.tributary.ffi.FlushResult.Delivered -> Delivered
            is dev.tributary.ffi.FlushResult.TimedOut -> TimedOut(result.pending.toLong())
            is dev.tributary.ffi.FlushResult.Offline -> Offline(result.pending.toLong())
            is dev.tributary.ffi.FlushResult.Unauthorized -> Unauthorized(result.pending.toLong())
            is dev.tributary.ffi.FlushResult.Disabled -> Disabled
        }
    }
}

/**
 * Per-call options of the recording calls; every field is optional.
 *
 * @property timestampMs the event's `timestamp` (ms since the Unix epoch), for an event
 *   that happened before it is recorded; null: now.
 * @property context keys that replace the same top-level keys of the event's `context`.
 * @property integrations the event's `integrations`, e.g. `mapOf("All" to false, "Mixpanel" to true)`.
 */
class EventOptions @JvmOverloads constructor(
    val timestampMs: Long? = null,
    val context: Map<String, Any?>? = null,
    val integrations: Map<String, Any?>? = null,
) {
    internal companion object {
        fun lower(options: EventOptions?): dev.tributary.ffi.EventOptions = dev.tributary.ffi.EventOptions(
            timestampMs = options?.timestampMs,
            contextJson = options?.context?.let { Json.encode(it) },
            integrationsJson = options?.integrations?.let { Json.encode(it) },
        )
    }
}

/**
 * The base class of every error the Rust core reports; its subclasses
 * (`dev.tributary.ffi.TributaryException.InvalidConfig`, `.EventTooLarge`,
 * `.InvalidJson`, `.StorageUnavailable`, `.ShutDown`) carry the core's message,
 * which says what went wrong and what to do.
 */
typealias TributaryException = dev.tributary.ffi.TributaryException

/**
 * A Tributary client: records analytics events durably on the device and
 * delivers each one exactly once to `{endpoint}/v1/batch`.
 *
 * Recording calls ([track], [identify], [screen], [page], [group], [alias]) validate
 * and serialize the event on the calling thread and hand it to the core's
 * background writer: they never wait for disk or network, so they are safe on
 * the main thread, and they never throw: what they cannot record is logged and
 * counted in [stats]. Only [flushBlocking], [awaitReady] and [shutdown] wait, each
 * within a stated bound. The constructor does no disk I/O beyond taking the
 * directory lock and reading a small consent file: the queue database in
 * `storageDir` is opened on the SDK's thread. Create the client once, e.g. in
 * `Application.onCreate`.
 *
 * One client per storage directory; it is thread-safe.
 *
 * @throws TributaryException (`InvalidConfig`, `StorageUnavailable`) from the constructor.
 */
class Tributary @JvmOverloads constructor(
    config: TributaryConfig,
    private val logger: Logger? = Logger.platform(),
    transport: Transport = HttpTransport(),
) : AutoCloseable {
    // The core builds each request and classifies each answer; the transport
    // (HttpURLConnection by default) only moves the bytes.
    private val client: Client =
        Client.withTransport(config.lower(), logger?.let { LoggerBridge(it) }, TransportBridge(transport))

    /**
     * A client with the usual settings: upload once [flushAt] events are
     * queued, or every [flushIntervalMs] milliseconds.
     */
    @JvmOverloads
    constructor(
        endpoint: String,
        writeKey: String,
        storageDir: File,
        flushAt: Int = 20,
        flushIntervalMs: Long = 30_000,
        logger: Logger? = Logger.platform(),
    ) : this(
        TributaryConfig(
            endpoint = endpoint,
            writeKey = writeKey,
            storageDir = storageDir.absolutePath,
            flushAt = positive("flushAt", flushAt.toLong()).toInt(),
            flushIntervalMs = positive("flushIntervalMs", flushIntervalMs),
        ),
        logger,
    )

    /**
     * Records a `track` event, e.g. `track("Signed Up", mapOf("plan" to "pro"))`.
     *
     * Never throws: property values JSON cannot hold are converted (see [Json]),
     * and an event the core refuses (larger than `maxEventBytes`, or recorded
     * after [shutdown]) is dropped, logged and counted in [stats].
     */
    @JvmOverloads
    fun track(event: String, properties: Map<String, Any?> = emptyMap(), options: EventOptions? = null) =
        record("track") {
            client.trackWithOptions(event, Json.encode(properties), EventOptions.lower(options))
        }

    /**
     * Records an `identify` event; [userId] is attached to every later event, and [traits]
     * are merged into the stored traits (persisted, sent in every event's `context.traits`).
     * Never throws (see [track]).
     */
    @JvmOverloads
    fun identify(userId: String, traits: Map<String, Any?> = emptyMap(), options: EventOptions? = null) =
        record("identify") {
            client.identifyWithOptions(userId, Json.encode(traits), EventOptions.lower(options))
        }

    /** Records a `screen` event. Never throws (see [track]). */
    @JvmOverloads
    fun screen(name: String, properties: Map<String, Any?> = emptyMap(), options: EventOptions? = null) =
        record("screen") {
            client.screenWithOptions(name, Json.encode(properties), EventOptions.lower(options))
        }

    /** Records a `page` event (web views, hybrid apps; native screens use [screen]). Never throws. */
    @JvmOverloads
    fun page(name: String, properties: Map<String, Any?> = emptyMap(), options: EventOptions? = null) =
        record("page") {
            client.pageWithOptions(name, Json.encode(properties), EventOptions.lower(options))
        }

    /** Records a `group` event. Never throws (see [track]). */
    @JvmOverloads
    fun group(groupId: String, traits: Map<String, Any?> = emptyMap(), options: EventOptions? = null) =
        record("group") {
            client.groupWithOptions(groupId, Json.encode(traits), EventOptions.lower(options))
        }

    /**
     * Adds super-properties, merged into the properties of every later `track`, `screen`
     * and `page` (a property the call passes wins) and persisted. Never throws.
     */
    fun register(properties: Map<String, Any?>) = record("register") {
        client.register(Json.encode(properties))
    }

    /** Removes one super-property (persisted). */
    fun unregister(key: String) {
        client.unregister(key)
    }

    /** The registered super-properties, as JSON object text. */
    val superPropertiesJson: String get() = client.superProperties()

    /** The traits merged from every [identify] since the last [reset], as JSON object text. */
    val traitsJson: String get() = client.traits()

    /**
     * The current session id: the session's start in ms since the Unix epoch, sent in
     * every event's `context.sessionId`. A session ends after `sessionTimeoutMs`
     * (30 minutes) in the background.
     */
    val sessionId: Long get() = client.sessionId()

    /** Reports that the app came to the foreground (done for you by the Android setup). */
    fun appForegrounded() {
        client.appForegrounded()
    }

    /** Reports that the app went to the background (done for you by the Android setup). */
    fun appBackgrounded() {
        client.appBackgrounded()
    }

    /**
     * Reports the app's version at launch to the core, which records `Application
     * Installed` or `Application Updated` (when [trackLifecycleEvents]) against the
     * version in its state file. It may wait up to 2 s for that file: the setup calls it
     * on its hook thread, never on the main thread.
     */
    internal fun appLaunched(version: String, build: String?, trackLifecycleEvents: Boolean) {
        try {
            client.appLaunched(version, build, trackLifecycleEvents)
        } catch (e: Exception) {
            // The core never fails here; a binding error must not reach the app either.
        }
    }

    /** Records an `alias` event from the current id to [newId], which becomes the user id. Never throws. */
    fun alias(newId: String) = record("alias") {
        client.alias(newId)
    }

    /**
     * Runs one recording call so that it never throws into the app: analytics
     * must not crash a checkout. The core already logged and counted what it
     * refused ([TributaryException]); anything else (a bug) is logged here.
     */
    private inline fun record(call: String, body: () -> Unit) {
        try {
            body()
        } catch (e: TributaryException) {
            // Logged and counted in Stats by the core.
        } catch (e: Exception) {
            try {
                logger?.log(LogLevel.ERROR, "$call dropped an event after an internal error: $e")
            } catch (ignored: Exception) {
                // A faulty logger must not turn this into a crash either.
            }
        }
    }

    /**
     * Waits up to [timeoutMs] for the queue database to be open and says whether it is.
     * The constructor does not open it (no disk I/O on the caller's thread); until it is
     * open, recorded events wait in memory and [stats] shows no queued events. A storage
     * error (reported to the logger and in `Stats.lastError`) is retried in the background.
     * It blocks: never call it on the main thread.
     */
    fun awaitReady(timeoutMs: Long): Boolean =
        client.awaitReady(positiveOrZero("timeoutMs", timeoutMs).toULong())

    /** Asks for an upload soon and returns at once. */
    fun flush() {
        client.flush()
    }

    /**
     * Waits until every event recorded before the call is delivered, delivery is
     * impossible (offline, unauthorized, opted out), or [timeoutMs] passes.
     * It blocks: never call it on the main thread.
     */
    fun flushBlocking(timeoutMs: Long): FlushResult =
        FlushResult.from(client.flushBlocking(positiveOrZero("timeoutMs", timeoutMs).toULong()))

    /** Forgets the user id, traits, super-properties and session, and starts a new anonymous id. */
    fun reset() {
        client.reset()
    }

    /** Stops recording and deletes every queued event, until [optIn]. */
    fun optOut() {
        client.setEnabled(false)
    }

    /** Resumes recording after [optOut]. */
    fun optIn() {
        client.setEnabled(true)
    }

    /** Tells the SDK whether the device is online; going online triggers an upload. */
    fun setNetworkAvailable(available: Boolean) {
        client.setNetworkAvailable(available)
    }

    /** Replaces the device context copied into every later event. */
    fun setContext(context: AppContext) {
        client.setContext(context.lower())
    }

    /** Replaces the write key and resumes uploads paused by a 401 or 403. */
    fun setWriteKey(writeKey: String) {
        client.setWriteKey(writeKey)
    }

    /** The current anonymous id. */
    val anonymousId: String get() = client.anonymousId()

    /** The user id set by [identify] or [alias], or null. */
    val userId: String? get() = client.userId()

    /** A snapshot of the queue and the counters. */
    fun stats(): Stats = Stats.from(client.stats())

    /**
     * Makes every recorded event durable, tries one last upload within
     * [timeoutMs], stops the background threads and releases the storage
     * directory. Later recording calls drop their event (logged, counted in
     * `Stats.droppedShutdown`). Blocks up to
     * [timeoutMs]; events not delivered stay on disk for the next client.
     */
    @JvmOverloads
    fun shutdown(timeoutMs: Long = 0): FlushResult {
        hooks?.stop()
        return FlushResult.from(client.shutdown(positiveOrZero("timeoutMs", timeoutMs).toULong()))
    }

    /** [shutdown] without a last upload: queued events stay on disk. */
    override fun close() {
        shutdown(0)
    }

    /** The hooks [setup] registered, stopped by [shutdown]. */
    @Volatile internal var hooks: PlatformHooks? = null

    /**
     * For the scheduled upload job: uploads what is queued, waiting up to [timeoutMs]
     * (call it on a background thread), and says whether everything was delivered.
     */
    fun runScheduledUpload(timeoutMs: Long): Boolean =
        flushBlocking(timeoutMs) == FlushResult.Delivered || stats().queuedEvents == 0L

    companion object {
        @Volatile private var current: Tributary? = null

        /**
         * The client made by the last [setup], for components the system starts on its
         * own (the scheduled upload job); null before setup.
         */
        @JvmStatic
        val shared: Tributary? get() = current

        /**
         * Creates the process's client and registers the platform hooks: connectivity,
         * the app lifecycle (sessions, a flush and a scheduled upload on going to the
         * background, optional lifecycle events) and the automatic context. The Android
         * overload `Tributary.setup(context, writeKey, endpoint) { … }` builds [platform]
         * itself.
         *
         * Returns at once: no network I/O, and the queue is opened on the SDK's thread.
         *
         * @throws IllegalArgumentException or [TributaryException] for a configuration
         *   that cannot work (an empty write key, a non-http endpoint, a zero flushAt).
         */
        @JvmStatic
        @JvmOverloads
        fun setup(platform: Platform, writeKey: String, endpoint: String, options: Options = Options()): Tributary {
            val tributary = Tributary(
                options.config(endpoint, writeKey, platform.storageDir),
                options.logger,
                options.transport,
            )
            val hooks = PlatformHooks(
                tributary,
                options.uploadScheduler?.let {
                    Platform(platform.storageDir, platform.context, platform.connectivity, platform.lifecycle, it)
                } ?: platform,
                options.trackLifecycleEvents,
            )
            tributary.hooks = hooks
            hooks.start()
            current = tributary
            return tributary
        }

        /** [setup] with the options set in a block: `setup(platform, key, url) { flushAt = 10 }`. */
        fun setup(platform: Platform, writeKey: String, endpoint: String, configure: Options.() -> Unit): Tributary =
            setup(platform, writeKey, endpoint, Options().apply(configure))

        internal fun positive(name: String, value: Long): Long {
            require(value > 0) { "$name must be at least 1, got $value" }
            return value
        }

        internal fun positiveOrZero(name: String, value: Long): Long {
            require(value >= 0) { "$name must not be negative, got $value" }
            return value
        }
    }
}
