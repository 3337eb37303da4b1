package dev.tributary.tests

import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException
import kotlin.system.exitProcess

/** One named test. */
class TestCase(val name: String, val body: () -> Unit)

/** Longest a single test may run before it counts as failed (a hang is a failure). */
private const val TEST_TIMEOUT_S = 90L

/**
 * A plain runner (there is no JUnit here): runs every test, prints each result,
 * and exits 1 if any failed. The closing line is `kotlin: N passed, M failed`.
 */
fun main(args: Array<String>) {
    val all = JsonTests.cases() + LoggerTests.cases() + ClientTests.cases() + TransportTests.cases() + PlatformTests.cases()
    val selected = if (args.isEmpty()) all else all.filter { t -> args.any { t.name.contains(it) } }
    val pool = Executors.newCachedThreadPool { r -> Thread(r, "test").apply { isDaemon = true } }
    var passed = 0
    var failed = 0
    for (test in selected) {
        val started = System.nanoTime()
        val error: Throwable? = try {
            pool.submit(test.body).get(TEST_TIMEOUT_S, TimeUnit.SECONDS)
            null
        } catch (e: TimeoutException) {
            AssertionError("did not finish within $TEST_TIMEOUT_S s")
        } catch (e: java.util.concurrent.ExecutionException) {
            e.cause ?: e
        }
        val ms = (System.nanoTime() - started) / 1_000_000
        if (error == null) {
            passed++
            println("ok   ${test.name} ($ms ms)")
        } else {
            failed++
            println("FAIL ${test.name} ($ms ms): $error")
            error.printStackTrace(System.out)
        }
    }
    println("kotlin: $passed passed, $failed failed")
    System.out.flush()
    // Daemon threads and any client a failed test left open must not keep the JVM alive.
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}
