package dev.tributary

import java.math.BigDecimal
import java.math.BigInteger
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * Thrown when an event's properties or traits cannot be written as JSON: a
 * non-finite number, a map key that is not a string, a value of an unsupported
 * type, or nesting deeper than [Json.MAX_DEPTH]. [path] names the offending
 * value, e.g. `properties.items[2].price`.
 */
class InvalidPropertyException(val path: String, message: String) : IllegalArgumentException(message)

/**
 * A small, strict JSON writer for event properties. It accepts what apps keep
 * in a `Map<String, Any?>`:
 * - `null`, [String]/[CharSequence], [Char], [Boolean];
 * - integers (including Kotlin's unsigned types), [Float] and [Double] (finite
 *   only: JSON has no NaN or Infinity), [BigDecimal], [BigInteger];
 * - [Map] with string keys, [Iterable], [Sequence], arrays and primitive arrays;
 * - [Enum] (its name), [Date] (ISO 8601 in UTC) and `java.time` values (their ISO text).
 *
 * Anything else is refused with an [InvalidPropertyException] naming the path,
 * rather than silently sent as `toString()`.
 */
object Json {
    /** Deepest nesting accepted; deeper usually means a map or list that contains itself. */
    const val MAX_DEPTH: Int = 64

    private val JSON_NUMBER = Regex("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")

    /** Writes [value] as JSON text. [path] names the root in error messages. */
    @JvmStatic
    @JvmOverloads
    fun encode(value: Any?, path: String = "value"): String {
        val out = StringBuilder()
        write(out, value, path, 0)
        return out.toString()
    }

    private fun write(out: StringBuilder, value: Any?, path: String, depth: Int) {
        if (depth > MAX_DEPTH) {
            throw InvalidPropertyException(
                path,
                "$path is nested more than $MAX_DEPTH levels deep; " +
                    "does a map or list contain itself? Flatten the value",
            )
        }
        when (value) {
            null -> out.append("null")
            is CharSequence -> writeString(out, value)
            is Char -> writeString(out, value.toString())
            is Boolean -> out.append(if (value) "true" else "false")
            is Int, is Long, is Short, is Byte, is BigInteger -> out.append(value.toString())
            is UInt, is ULong, is UShort, is UByte -> out.append(value.toString())
            is Double -> out.append(finite(value.isFinite(), value.toString(), path))
            is Float -> out.append(finite(value.isFinite(), value.toString(), path))
            is BigDecimal -> out.append(value.toString())
            is Number -> writeOtherNumber(out, value, path)
            is Map<*, *> -> writeMap(out, value, path, depth)
            is Iterable<*> -> writeArray(out, value.iterator(), path, depth)
            is Sequence<*> -> writeArray(out, value.iterator(), path, depth)
            is Array<*> -> writeArray(out, value.iterator(), path, depth)
            is IntArray -> writeArray(out, value.iterator(), path, depth)
            is LongArray -> writeArray(out, value.iterator(), path, depth)
            is ShortArray -> writeArray(out, value.iterator(), path, depth)
            is ByteArray -> writeArray(out, value.iterator(), path, depth)
            is DoubleArray -> writeArray(out, value.iterator(), path, depth)
            is FloatArray -> writeArray(out, value.iterator(), path, depth)
            is BooleanArray -> writeArray(out, value.iterator(), path, depth)
            is CharArray -> writeArray(out, value.iterator(), path, depth)
            is Enum<*> -> writeString(out, value.name)
            is Date -> writeString(out, isoUtc(value))
            // Named, not referenced: java.time only exists from Android API 26.
            else -> if (value.javaClass.name.startsWith("java.time.")) {
                writeString(out, value.toString())
            } else {
                throw InvalidPropertyException(
                    path,
                    "$path has unsupported type ${value.javaClass.name}; pass null, a String, " +
                        "Number, Boolean, Date, Map<String, *>, List/Iterable or array",
                )
            }
        }
    }

    private fun finite(isFinite: Boolean, text: String, path: String): String {
        if (!isFinite) {
            throw InvalidPropertyException(
                path,
                "$path is $text, which JSON cannot represent; send a finite number, or null",
            )
        }
        return text
    }

    /** AtomicLong, custom Number subclasses...: accepted only if their text is a JSON number. */
    private fun writeOtherNumber(out: StringBuilder, value: Number, path: String) {
        val text = value.toString()
        if (!JSON_NUMBER.matches(text)) {
            throw InvalidPropertyException(
                path,
                "$path is a ${value.javaClass.name} whose text `$text` is not a JSON number; " +
                    "convert it to a finite Double, Long or BigDecimal",
            )
        }
        out.append(text)
    }

    private fun writeMap(out: StringBuilder, map: Map<*, *>, path: String, depth: Int) {
        out.append('{')
        var first = true
        for ((key, item) in map) {
            if (key !is CharSequence) {
                throw InvalidPropertyException(
                    path,
                    "$path has a key of type ${key?.javaClass?.name ?: "null"} ($key); " +
                        "JSON object keys must be strings",
                )
            }
            if (!first) out.append(',')
            first = false
            writeString(out, key)
            out.append(':')
            write(out, item, "$path.$key", depth + 1)
        }
        out.append('}')
    }

    private fun writeArray(out: StringBuilder, items: Iterator<*>, path: String, depth: Int) {
        out.append('[')
        var index = 0
        while (items.hasNext()) {
            if (index > 0) out.append(',')
            write(out, items.next(), "$path[$index]", depth + 1)
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
