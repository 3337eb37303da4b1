package dev.tributary.tests

/**
 * A small JSON parser for the tests (the server side of the round trips), kept
 * apart from the encoder under test. Objects become LinkedHashMap, arrays List,
 * integers Long, other numbers Double.
 */
class MiniJson private constructor(private val s: String) {
    private var i = 0

    companion object {
        fun parse(text: String): Any? {
            val p = MiniJson(text)
            val v = p.value()
            p.ws()
            if (p.i != text.length) p.fail("trailing characters")
            return v
        }
    }

    private fun fail(what: String): Nothing = throw IllegalArgumentException("JSON: $what at $i in ${s.take(200)}")

    private fun ws() {
        while (i < s.length && s[i] in " \t\r\n") i++
    }

    private fun value(): Any? {
        ws()
        if (i >= s.length) fail("unexpected end")
        return when (s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> lit("true", true)
            'f' -> lit("false", false)
            'n' -> lit("null", null)
            else -> num()
        }
    }

    private fun lit(word: String, v: Any?): Any? {
        if (!s.startsWith(word, i)) fail("bad literal")
        i += word.length
        return v
    }

    private fun obj(): Map<String, Any?> {
        val m = LinkedHashMap<String, Any?>()
        i++
        ws()
        if (s[i] == '}') { i++; return m }
        while (true) {
            ws()
            val k = str()
            ws()
            if (s[i++] != ':') fail("expected :")
            m[k] = value()
            ws()
            when (s[i++]) {
                ',' -> continue
                '}' -> return m
                else -> fail("expected , or }")
            }
        }
    }

    private fun arr(): List<Any?> {
        val l = ArrayList<Any?>()
        i++
        ws()
        if (s[i] == ']') { i++; return l }
        while (true) {
            l.add(value())
            ws()
            when (s[i++]) {
                ',' -> continue
                ']' -> return l
                else -> fail("expected , or ]")
            }
        }
    }

    private fun str(): String {
        if (s[i] != '"') fail("expected string")
        i++
        val b = StringBuilder()
        while (true) {
            val c = s[i++]
            when (c) {
                '"' -> return b.toString()
                '\\' -> when (val e = s[i++]) {
                    'n' -> b.append('\n'); 't' -> b.append('\t'); 'r' -> b.append('\r')
                    'b' -> b.append('\b'); 'f' -> b.append('\u000C')
                    'u' -> { b.append(s.substring(i, i + 4).toInt(16).toChar()); i += 4 }
                    else -> b.append(e)
                }
                else -> {
                    if (c < ' ') fail("raw control character in string")
                    b.append(c)
                }
            }
        }
    }

    private fun num(): Any {
        val start = i
        while (i < s.length && s[i] in "+-0123456789.eE") i++
        val t = s.substring(start, i)
        if (t.isEmpty()) fail("unexpected character")
        return if (t.any { it in ".eE" }) t.toDouble() else t.toLong()
    }
}
