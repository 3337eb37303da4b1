package dev.tributary

import java.lang.reflect.Method

/** Severity of an SDK log message (DEBUG < INFO < WARN < ERROR). */
typealias LogLevel = dev.tributary.ffi.LogLevel

/**
 * Receives the SDK's log messages. It is called from the SDK's background
 * threads, and from a recording call's thread when that call drops its event
 * (too large, or after shutdown), so implementations must be thread-safe and
 * quick. Exceptions thrown here are swallowed.
 */
fun interface Logger {
    /** Called once per message. */
    fun log(level: LogLevel, message: String)

    companion object {
        /**
         * The default logger: Logcat (`android.util.Log`, tag `Tributary`) on
         * Android, standard error elsewhere. Messages below [minLevel] are dropped.
         */
        @JvmStatic
        @JvmOverloads
        fun platform(minLevel: LogLevel = LogLevel.INFO): Logger = PlatformLogger(minLevel)
    }
}

/**
 * Routes messages to `android.util.Log` when that class is present and works
 * (found by reflection, so the same jar runs on a plain JVM), else to stderr.
 */
class PlatformLogger internal constructor(
    private val minLevel: LogLevel,
    private val tag: String,
    androidLogClass: String,
) : Logger {
    /** A logger at [minLevel] with the Logcat tag [tag]. */
    @JvmOverloads
    constructor(minLevel: LogLevel = LogLevel.INFO, tag: String = "Tributary") :
        this(minLevel, tag, "android.util.Log")

    private val androidPrintln: Method? = findPrintln(androidLogClass)

    override fun log(level: LogLevel, message: String) {
        if (level < minLevel) return
        if (!printToAndroid(level, message)) {
            System.err.println("[$tag] ${level.name} $message")
        }
    }

    /** `Log.println(priority, tag, msg)`; false when absent or a stub that throws (android.jar on a JVM). */
    private fun printToAndroid(level: LogLevel, message: String): Boolean {
        val method = androidPrintln ?: return false
        return try {
            method.invoke(null, priority(level), tag, message)
            true
        } catch (e: Exception) {
            false
        }
    }

    private companion object {
        // android.util.Log's priority constants, stable since API 1.
        fun priority(level: LogLevel): Int = when (level) {
            LogLevel.DEBUG -> 3
            LogLevel.INFO -> 4
            LogLevel.WARN -> 5
            LogLevel.ERROR -> 6
        }

        fun findPrintln(className: String): Method? = try {
            Class.forName(className).getMethod(
                "println",
                Int::class.javaPrimitiveType,
                String::class.java,
                String::class.java,
            )
        } catch (e: ReflectiveOperationException) {
            null
        } catch (e: LinkageError) {
            null
        }
    }
}

/** Adapts a [Logger] to the generated callback interface, shielding Rust from its exceptions. */
internal class LoggerBridge(private val inner: Logger) : dev.tributary.ffi.TributaryLogger {
    override fun log(level: LogLevel, message: String) {
        try {
            inner.log(level, message)
        } catch (e: Exception) {
            // A faulty logger must never disturb the SDK's upload or writer threads.
        }
    }
}
