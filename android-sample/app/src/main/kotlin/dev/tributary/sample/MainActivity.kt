package dev.tributary.sample

import android.app.Activity
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.view.ViewGroup.LayoutParams
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import dev.tributary.Stats
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Buttons for the four actions (track, go offline/online, flush, and the stats
 * view refreshed every second). Views are built in code, so the sample needs
 * no resources.
 */
class MainActivity : Activity() {
    private val app by lazy { SampleApp.of(this) }
    private val main = Handler(Looper.getMainLooper())
    // stats() reads the queue's counters; keep even that off the main thread.
    private val background: ExecutorService = Executors.newSingleThreadExecutor()
    private lateinit var statsView: TextView
    private lateinit var offlineButton: Button
    private var tracked = 0

    private val refresher = object : Runnable {
        override fun run() {
            refreshStats()
            main.postDelayed(this, 1_000)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(32, 32, 32, 32)
        }
        column.addView(button("Track event") { trackEvent() })
        offlineButton = button("") { toggleOffline() }
        column.addView(offlineButton)
        column.addView(button("Flush") { app.tributary.flush() })
        statsView = TextView(this).apply { textSize = 14f }
        column.addView(statsView)
        setContentView(ScrollView(this).apply { addView(column) })
        app.tributary.screen("Main")
        updateOfflineLabel()
    }

    override fun onResume() {
        super.onResume()
        main.post(refresher)
    }

    override fun onPause() {
        main.removeCallbacks(refresher)
        super.onPause()
    }

    override fun onDestroy() {
        background.shutdown()
        super.onDestroy()
    }

    private fun button(label: String, onClick: () -> Unit) = Button(this).apply {
        text = label
        layoutParams = LinearLayout.LayoutParams(LayoutParams.MATCH_PARENT, LayoutParams.WRAP_CONTENT)
        setOnClickListener { onClick() }
    }

    private fun trackEvent() {
        tracked++
        // Returns at once: the event is validated here and written by the SDK's thread.
        app.tributary.track(
            "Button Tapped",
            mapOf(
                "count" to tracked,
                "screen" to "Main",
                "tags" to listOf("sample", "android"),
                "position" to mapOf("x" to 0.5, "y" to 0.25),
            ),
        )
        refreshStats()
    }

    private fun toggleOffline() {
        app.network.setForcedOffline(!app.network.isForcedOffline)
        updateOfflineLabel()
    }

    private fun updateOfflineLabel() {
        offlineButton.text = if (app.network.isForcedOffline) "Go online" else "Go offline"
    }

    private fun refreshStats() {
        if (background.isShutdown) return
        background.execute {
            val stats = app.tributary.stats()
            val online = app.network.isOnline
            main.post { statsView.text = describe(stats, online) }
        }
    }

    private fun describe(s: Stats, online: Boolean): String = buildString {
        appendLine("network: ${if (online) "online" else "offline"}")
        appendLine("tracked here: $tracked")
        appendLine("queued: ${s.queuedEvents} events, ${s.queuedBytes} bytes")
        appendLine("in flight: ${s.inFlightEvents}")
        appendLine("uploaded: ${s.uploadedEvents}")
        appendLine("retries: ${s.retries}")
        appendLine(
            "dropped: age ${s.droppedAge}, size cap ${s.droppedByteCap}, rejected ${s.droppedRejected}, " +
                "too large ${s.droppedTooLarge}, backpressure ${s.droppedBackpressure}",
        )
        s.lastError?.let { appendLine("last error: $it") }
    }
}
