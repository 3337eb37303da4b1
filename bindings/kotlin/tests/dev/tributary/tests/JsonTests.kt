package dev.tributary.tests

import dev.tributary.Json
import java.math.BigDecimal
import java.math.BigInteger
import java.util.Date
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/** The JSON encoder alone: every supported type, and every conversion of what JSON cannot hold. */
object JsonTests {
    private enum class Plan { PRO }

    fun cases() = listOf(
        TestCase("json: scalars") {
            assertEquals("null", Json.encode(null))
            assertEquals("true", Json.encode(true))
            assertEquals("42", Json.encode(42))
            assertEquals("-9223372036854775808", Json.encode(Long.MIN_VALUE))
            assertEquals("18446744073709551615", Json.encode(ULong.MAX_VALUE))
            assertEquals("7", Json.encode(7.toShort()))
            assertEquals("1.5", Json.encode(1.5))
            assertEquals("0.1", Json.encode(0.1f))
            assertEquals("1.0E-7", Json.encode(1e-7))
            assertEquals("12345678901234567890123", Json.encode(BigInteger("12345678901234567890123")))
            assertEquals("1.25", Json.encode(BigDecimal("1.25")))
            assertEquals("5", Json.encode(java.util.concurrent.atomic.AtomicLong(5)))
            assertEquals("\"PRO\"", Json.encode(Plan.PRO))
            assertEquals("\"c\"", Json.encode('c'))
            assertEquals("\"1970-01-01T00:00:01.500Z\"", Json.encode(Date(1500)))
        },
        TestCase("json: output parses back to the same structure") {
            val value = mapOf(
                "s" to "quote \" backslash \\ newline \n tab \t ctl \u0001 emoji \uD83D\uDE00 é",
                "list" to listOf(1, "two", null, listOf(true)),
                "set" to linkedSetOf(3L),
                "array" to arrayOf("a"),
                "ints" to intArrayOf(1, 2),
                "doubles" to doubleArrayOf(0.5),
                "seq" to sequenceOf(9),
                "nested" to mapOf("deeper" to mapOf<String, Any?>("empty" to emptyMap<String, Any>())),
            )
            val parsed = MiniJson.parse(Json.encode(value))
            val expected = mapOf(
                "s" to value["s"],
                "list" to listOf(1L, "two", null, listOf(true)),
                "set" to listOf(3L),
                "array" to listOf("a"),
                "ints" to listOf(1L, 2L),
                "doubles" to listOf(0.5),
                "seq" to listOf(9L),
                "nested" to mapOf("deeper" to mapOf("empty" to emptyMap<String, Any>())),
            )
            assertEquals(expected, parsed)
        },
        TestCase("json: lone surrogates become U+FFFD, U+2028 is escaped") {
            assertEquals("\"a\uFFFDb\"", Json.encode("a\uD800b"))
            assertEquals("\"\\u2028\"", Json.encode("\u2028"))
        },
        TestCase("json: non-finite numbers become null") {
            assertEquals(
                """{"cart":[{"price":null,"qty":1}]}""",
                Json.encode(mapOf("cart" to listOf(mapOf("price" to Double.NaN, "qty" to 1)))),
            )
            assertEquals("null", Json.encode(Float.POSITIVE_INFINITY))
            assertEquals("[null]", Json.encode(listOf(Double.NEGATIVE_INFINITY)))
        },
        TestCase("json: non-string keys and unsupported types become their string form") {
            assertEquals("""{"1":"x"}""", Json.encode(mapOf(1 to "x")))
            val thread = Thread.currentThread()
            val parsed = MiniJson.parse(Json.encode(mapOf("thread" to thread))) as Map<*, *>
            assertEquals(thread.toString(), parsed["thread"])
            val throwing = object {
                override fun toString(): String = throw IllegalStateException("no text")
            }
            assertEquals("""{"bad":null}""", Json.encode(mapOf("bad" to throwing)))
        },
        TestCase("json: a list that contains itself ends in null, not a stack overflow") {
            val loop = ArrayList<Any?>()
            loop.add(loop)
            val text = Json.encode(loop)
            assertTrue(text.startsWith("[[[") && text.contains("null"), text)
            MiniJson.parse(text)
        },
    )
}
