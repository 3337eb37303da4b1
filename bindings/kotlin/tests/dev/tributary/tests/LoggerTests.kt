package dev.tributary.tests

import dev.tributary.LogLevel
import dev.tributary.PlatformLogger
import java.io.ByteArrayOutputStream
import java.io.PrintStream
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/** Stands in for android.util.Log: same static `println(int, String, String)`. */
object FakeAndroidLog {
    val lines = java.util.Collections.synchronizedList(ArrayList<String>())

    @JvmStatic
    fun println(priority: Int, tag: String, msg: String): Int {
        lines.add("$priority/$tag: $msg")
        return 0
    }
}

/** The platform logger's routing, without the Rust core. */
object LoggerTests {
    fun cases() = listOf(
        TestCase("logger: on a JVM without android.util.Log, messages go to stderr") {
            val captured = ByteArrayOutputStream()
            val saved = System.err
            System.setErr(PrintStream(captured, true, "UTF-8"))
            try {
                val logger = PlatformLogger(LogLevel.INFO)
                logger.log(LogLevel.DEBUG, "hidden")
                logger.log(LogLevel.WARN, "queue full")
            } finally {
                System.setErr(saved)
            }
            assertEquals("[Tributary] WARN queue full\n", captured.toString("UTF-8"))
        },
        TestCase("logger: routed to android.util.Log's println when present") {
            val logger = PlatformLogger(LogLevel.DEBUG, "Tag", FakeAndroidLog::class.java.name)
            logger.log(LogLevel.DEBUG, "d")
            logger.log(LogLevel.ERROR, "e")
            assertEquals(listOf("3/Tag: d", "6/Tag: e"), FakeAndroidLog.lines.toList())
        },
        TestCase("logger: a stub android.util.Log that throws falls back to stderr") {
            val captured = ByteArrayOutputStream()
            val saved = System.err
            System.setErr(PrintStream(captured, true, "UTF-8"))
            try {
                PlatformLogger(LogLevel.INFO, "T", ThrowingLog::class.java.name).log(LogLevel.INFO, "x")
            } finally {
                System.setErr(saved)
            }
            assertTrue(captured.toString("UTF-8").contains("[T] INFO x"))
        },
    )
}

/** Like android.jar's stubs on a JVM: every method throws `RuntimeException("Stub!")`. */
object ThrowingLog {
    @JvmStatic
    fun println(priority: Int, tag: String, msg: String): Int = throw RuntimeException("Stub!")
}
