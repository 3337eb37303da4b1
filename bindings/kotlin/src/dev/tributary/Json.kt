package dev.tributary

import java.math.BigDecimal
import java.math.BigInteger
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * A small JSON writer for event properties. It never throws: analytics must not
 * crash the app, so a value JSON cannot hold is converted by these rules.
 *
 * Written as themselves:
 * - `null`, [String]/[CharSequence], [Char], [Boolean];
 * - integers (including Kotlin's unsigned types), finite [Float] and [Double],
 *   [BigDecimal], [BigInteger], and other [Number]s whose text is a JSON number;
 * - [Map], [Iterable], [Sequence], arrays and primitive arrays;
 * - [Enum] (its name), [Date] (ISO 8601 in UTC) and `java.time` values (their ISO text).
 *
 * Converted:
 * - NaN and the infinities (JSON has none) become `null`;
 * - a map key that is not a string becomes its `toString()`;
 * - any other object (or a [Number] whose text is not a JSON number) becomes
 *   its `toString()` as a JSON string; `null` if `toString()` itself throws;
 * - a value nested deeper than [MAX_DEPTH] (usually a map or list that
 *   contains itself) becomes `null`.
 */
object Json {
    /** Deepest nesting accepted; deeper usually means a map or list that contains itself. */
    const val MAX_DEPTH: Int = 64

    private val JSON_NUMBER = Regex("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")

    /** Writes [value] as JSON text, converting what JSON cannot hold (see above); never throws. */
    @JvmStatic
    fun encode(value: Any?): String {
        val out = StringBuilder()
        write(out, value, 0)
        return out.toString()
    }

    private fun write(out: StringBuilder, value: Any?, depth: Int) {
        if (depth > MAX_DEPTH) {
            out.append("null")
            return
        }
        when (value) {
            null -> out.append("null")
            is CharSequence -> writeString(out, value)
            is Char -> writeString(out, value.toString())
            is Boolean -> out.append(if (value) "true" else "false")
            is Int, is Long, is Short, is Byte, is BigInteger -> out.append(value.toString())
            is UInt, is ULong, is UShort, is UByte -> out.append(value.toString())
            is Double -> out.append(if (value.isFinite()) value.toString() else "null")
            is Float -> out.append(if (value.isFinite()) value.toString() else "null")
            is BigDecimal -> out.append(value.toString())
            is Number -> writeOtherNumber(out, value)
            is Map<*, *> -> writeMap(out, value, depth)
            is Iterable<*> -> writeArray(out, value.iterator(), depth)
            is Sequence<*> -> writeArray(out, value.iterator(), depth)
            is Array<*> -> writeArray(out, value.iterator(), depth)
            is IntArray -> writeArray(out, value.iterator(), depth)
            is LongArray -> writeArray(out, value.iterator(), depth)
            is ShortArray -> writeArray(out, value.iterator(), depth)
            is ByteArray -> writeArray(out, value.iterator(), depth)
            is DoubleArray -> writeArray(out, value.iterator(), depth)
            is FloatArray -> writeArray(out, value.iterator(), depth)
            is BooleanArray -> writeArray(out, value.iterator(), depth)
            is CharArray -> writeArray(out, value.iterator(), depth)
            is Enum<*> -> writeString(out, value.name)
            is Date -> writeString(out, isoUtc(value))
            // Named, not referenced: java.time only exists from Android API 26.
            // java.time values (named, not referenced: they only exist from
            // Android API 26) and every other object: their string form.
            else -> writeText(out, value)
        }
    }

    /** AtomicLong, custom Number subclasses...: as a number if their text is one, else as a string. */
    private fun writeOtherNumber(out: StringBuilder, value: Number) {
        val text = textOf(value)
        when {
            text == null -> out.append("null")
            JSON_NUMBER.matches(text) -> out.append(text)
            else -> writeString(out, text)
        }
    }

    /** An object JSON has no type for: its `toString()`, or `null` if that throws. */
    private fun writeText(out: StringBuilder, value: Any) {
        val text = textOf(value)
        if (text == null) out.append("null") else writeString(out, text)
    }

    private fun textOf(value: Any): String? = try {
        value.toString()
    } catch (e: Exception) {
        null
    }

    private fun writeMap(out: StringBuilder, map: Map<*, *>, depth: Int) {
        out.append('{')
        var first = true
        for ((key, item) in map) {
            // JSON keys are strings: any other key is written as its string form.
            val name: CharSequence = key as? CharSequence ?: key?.let { textOf(it) } ?: "null"
            if (!first) out.append(',')
            first = false
            writeString(out, name)
            out.append(':')
            write(out, item, depth + 1)
        }
        out.append('}')
    }

    private fun writeArray(out: StringBuilder, items: Iterator<*>, depth: Int) {
        out.append('[')
        var index = 0
        while (items.hasNext()) {
            if (index > 0) out.append(',')
            write(out, items.next(), depth + 1)
            index++
        }
        out.append(']')
    }

    /**
     * Escapes quotes, backslashes and control characters. A lone UTF-16
     * surrogate cannot be encoded as UTF-8 (and the Rust side would refuse its
     * `\uD8xx` escape), so it becomes U+FFFD, as Java's own encoder does.
     */
    private fun writeString(out: StringBuilder, s: CharSequence) {
        out.append('"')
        var i = 0
        while (i < s.length) {
            val c = s[i]
            when {
                c == '"' -> out.append("\\\"")
                c == '\\' -> out.append("\\\\")
                c == '\n' -> out.append("\\n")
                c == '\r' -> out.append("\\r")
                c == '\t' -> out.append("\\t")
                c == '\b' -> out.append("\\b")
                c == '\u000C' -> out.append("\\f")
                c < ' ' || c == '\u2028' || c == '\u2029' ->
                    out.append("\\u").append(String.format(Locale.ROOT, "%04x", c.code))
                c.isHighSurrogate() && i + 1 < s.length && s[i + 1].isLowSurrogate() -> {
                    out.append(c).append(s[i + 1])
                    i++
                }
                c.isSurrogate() -> out.append('\uFFFD')
                else -> out.append(c)
            }
            i++
        }
        out.append('"')
    }

    private fun isoUtc(date: Date): String {
        // SimpleDateFormat is not thread-safe: one per call (recording is not this hot).
        val format = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", Locale.ROOT)
        format.timeZone = TimeZone.getTimeZone("UTC")
        return format.format(date)
    }
}
