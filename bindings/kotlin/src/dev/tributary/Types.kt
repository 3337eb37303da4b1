package dev.tributary

/**
 * Every setting of a client, with plain Java types (no unsigned numbers). Durations are
 * in milliseconds and sizes in bytes; every default is the Rust core's own. Build one
 * with `TributaryConfig(endpoint, writeKey, storageDir, flushAt = 50, ...)`, or use
 * [Options] with [Tributary.setup]. A value the core cannot use (zero, negative, or a
 * non-http endpoint) is refused by the [Tributary] constructor.
 */
data class TributaryConfig @JvmOverloads constructor(
    /** Base URL of the collector, e.g. `https://ingest.example.com`. */
    val endpoint: String,
    /** The source's write key, sent as the HTTP Basic user name. */
    val writeKey: String,
    /** Directory that holds the queue database; one client per directory. */
    val storageDir: String,
    /** Upload once this many events are queued. */
    val flushAt: Int = DEFAULTS.flushAt.toInt(),
    /** Upload at least this often while events are queued. */
    val flushIntervalMs: Long = DEFAULTS.flushIntervalMs.toLong(),
    /** Most events in one batch. */
    val maxBatchEvents: Int = DEFAULTS.maxBatchEvents.toInt(),
    /** Most bytes in one batch, before gzip. */
    val maxBatchBytes: Long = DEFAULTS.maxBatchBytes.toLong(),
    /** Most bytes in one serialized event; larger events are dropped and counted. */
    val maxEventBytes: Long = DEFAULTS.maxEventBytes.toLong(),
    /** Most bytes queued on disk; past it the oldest events are evicted, counted. */
    val maxQueueBytes: Long = DEFAULTS.maxQueueBytes.toLong(),
    /** Events older than this are evicted, counted. */
    val maxEventAgeMs: Long = DEFAULTS.maxEventAgeMs.toLong(),
    /** First retry delay; doubles per failed attempt, with full jitter. */
    val retryBaseDelayMs: Long = DEFAULTS.retryBaseDelayMs.toLong(),
    /** Cap on the retry delay. */
    val retryMaxDelayMs: Long = DEFAULTS.retryMaxDelayMs.toLong(),
    /** Connect timeout of an upload. */
    val connectTimeoutMs: Long = DEFAULTS.connectTimeoutMs.toLong(),
    /** Whole-request timeout of an upload. */
    val requestTimeoutMs: Long = DEFAULTS.requestTimeoutMs.toLong(),
    /** Most bytes of recorded events held in memory before they are on disk. */
    val maxBufferBytes: Long = DEFAULTS.maxBufferBytes.toLong(),
    /** A session ends once the app has been in the background this long. */
    val sessionTimeoutMs: Long = DEFAULTS.sessionTimeoutMs.toLong(),
    /** Reported in `context.library.name`; empty: this layer's own name. */
    val libraryName: String = "",
    /** Reported in `context.library.version`; empty: this layer's own version. */
    val libraryVersion: String = "",
) {
    /** The FFI record; a negative number is refused here, with its name. */
    internal fun lower(): dev.tributary.ffi.Config = dev.tributary.ffi.Config(
        endpoint = endpoint,
        writeKey = writeKey,
        storageDir = storageDir,
        flushAt = nonNegative("flushAt", flushAt.toLong()).toUInt(),
        flushIntervalMs = nonNegative("flushIntervalMs", flushIntervalMs).toULong(),
        maxBatchEvents = nonNegative("maxBatchEvents", maxBatchEvents.toLong()).toUInt(),
        maxBatchBytes = nonNegative("maxBatchBytes", maxBatchBytes).toULong(),
        maxEventBytes = nonNegative("maxEventBytes", maxEventBytes).toULong(),
        maxQueueBytes = nonNegative("maxQueueBytes", maxQueueBytes).toULong(),
        maxEventAgeMs = nonNegative("maxEventAgeMs", maxEventAgeMs).toULong(),
        retryBaseDelayMs = nonNegative("retryBaseDelayMs", retryBaseDelayMs).toULong(),
        retryMaxDelayMs = nonNegative("retryMaxDelayMs", retryMaxDelayMs).toULong(),
        connectTimeoutMs = nonNegative("connectTimeoutMs", connectTimeoutMs).toULong(),
        requestTimeoutMs = nonNegative("requestTimeoutMs", requestTimeoutMs).toULong(),
        maxBufferBytes = nonNegative("maxBufferBytes", maxBufferBytes).toULong(),
        sessionTimeoutMs = nonNegative("sessionTimeoutMs", sessionTimeoutMs).toULong(),
        libraryName = libraryName.ifEmpty { LIBRARY_NAME },
        libraryVersion = libraryVersion.ifEmpty { LIBRARY_VERSION },
    )

    internal companion object {
        /** The core's defaults, read from the generated record so they are never copied. */
        val DEFAULTS = dev.tributary.ffi.Config("", "", "")
        const val LIBRARY_NAME = "tributary-kotlin"
        const val LIBRARY_VERSION = "0.1.0"

        fun nonNegative(name: String, value: Long): Long {
            require(value >= 0) { "$name must not be negative, got $value" }
            return value
        }
    }
}

/**
 * A snapshot of the client's queue and counters since it was created, with plain Java
 * types (`long` counters). At any quiet moment `restoredEvents + recordedEvents =
 * uploadedEvents + queuedEvents + bufferedEvents + every dropped counter`.
 */
data class Stats(
    /** Events on disk waiting for upload, including the batch in flight. */
    val queuedEvents: Long,
    /** Bytes of those events. */
    val queuedBytes: Long,
    /** Events in the current batch (being sent or retried), 0 if none. */
    val inFlightEvents: Long,
    /** Idempotency key of the current batch, if any. */
    val inFlightBatch: String?,
    /** Events acknowledged by the server. */
    val uploadedEvents: Long,
    /** Events evicted because they were older than `maxEventAgeMs`. */
    val droppedAge: Long,
    /** Events evicted because the queue exceeded `maxQueueBytes`. */
    val droppedByteCap: Long,
    /** Events the server rejected. */
    val droppedRejected: Long,
    /** Events refused because they exceeded `maxEventBytes`. */
    val droppedTooLarge: Long,
    /** Events dropped because the in-memory buffer was full (`maxBufferBytes`). */
    val droppedBackpressure: Long,
    /** Upload attempts that failed and were scheduled again. */
    val retries: Long,
    /** The last upload or storage error, if any. */
    val lastError: String?,
    /** Times the database was found corrupt, moved aside and recreated. */
    val databaseResets: Long,
    /** Events lost when a corrupt database was replaced. */
    val droppedCorrupt: Long,
    /** Events recorded but never stored because the client shut down first. */
    val droppedShutdown: Long,
    /** Events deleted from the queue (or refused) by opting out. */
    val droppedOptOut: Long,
    /** Events the recording calls accepted since the client was created. */
    val recordedEvents: Long,
    /** Events found queued on disk when the database was opened (an earlier run's). */
    val restoredEvents: Long,
    /** Events recorded but not yet on disk. */
    val bufferedEvents: Long,
    /** Bytes of those events. */
    val bufferedBytes: Long,
    /** Times a background thread panicked and was restarted (a bug: see [lastError]). */
    val threadRestarts: Long,
) {
    internal companion object {
        // Counters are far below Long.MAX_VALUE; clamp rather than wrap if one ever is not.
        private fun n(value: ULong): Long = if (value > Long.MAX_VALUE.toULong()) Long.MAX_VALUE else value.toLong()

        fun from(s: dev.tributary.ffi.Stats) = Stats(
            queuedEvents = n(s.queuedEvents),
            queuedBytes = n(s.queuedBytes),
            inFlightEvents = n(s.inFlightEvents),
            inFlightBatch = s.inFlightBatch,
            uploadedEvents = n(s.uploadedEvents),
            droppedAge = n(s.droppedAge),
            droppedByteCap = n(s.droppedByteCap),
            droppedRejected = n(s.droppedRejected),
            droppedTooLarge = n(s.droppedTooLarge),
            droppedBackpressure = n(s.droppedBackpressure),
            retries = n(s.retries),
            lastError = s.lastError,
            databaseResets = n(s.databaseResets),
            droppedCorrupt = n(s.droppedCorrupt),
            droppedShutdown = n(s.droppedShutdown),
            droppedOptOut = n(s.droppedOptOut),
            recordedEvents = n(s.recordedEvents),
            restoredEvents = n(s.restoredEvents),
            bufferedEvents = n(s.bufferedEvents),
            bufferedBytes = n(s.bufferedBytes),
            threadRestarts = n(s.threadRestarts),
        )
    }
}
