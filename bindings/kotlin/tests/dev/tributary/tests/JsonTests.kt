package dev.tributary.tests

import dev.tributary.InvalidPropertyException
import dev.tributary.Json
import java.math.BigDecimal
import java.math.BigInteger
import java.util.Date
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

/** The JSON encoder alone: every supported type, and every refusal with its path. */
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
        TestCase("json: non-finite numbers are refused with their path") {
            val e = assertFailsWith<InvalidPropertyException> {
                Json.encode(mapOf("cart" to listOf(mapOf("price" to Double.NaN))), "properties")
            }
            assertEquals("properties.cart[0].price", e.path)
            assertTrue(e.message!!.contains("NaN") && e.message!!.contains("finite"), e.message)
            assertFailsWith<InvalidPropertyException> { Json.encode(Float.POSITIVE_INFINITY) }
        },
        TestCase("json: non-string keys and unsupported types are refused") {
            val key = assertFailsWith<InvalidPropertyException> { Json.encode(mapOf(1 to "x"), "traits") }
            assertTrue(key.message!!.contains("keys must be strings"), key.message)
            val type = assertFailsWith<InvalidPropertyException> {
                Json.encode(mapOf("thread" to Thread.currentThread()), "properties")
            }
            assertEquals("properties.thread", type.path)
            assertTrue(type.message!!.contains("java.lang.Thread"), type.message)
        },
        TestCase("json: a list that contains itself is refused, not a stack overflow") {
            val loop = ArrayList<Any?>()
            loop.add(loop)
            val e = assertFailsWith<InvalidPropertyException> { Json.encode(loop) }
            assertTrue(e.message!!.contains("nested more than"), e.message)
        },
    )
}
