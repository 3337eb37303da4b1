package dev.tributary.sample

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.LinearLayout

/** Two buttons: track an event, and ask for an upload. No resources needed. */
class MainActivity : Activity() {
    private val tributary by lazy { SampleApp.of(this).tributary }
    private var tapped = 0

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val column = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        column.addView(
            Button(this).apply {
                text = "Track event"
                // Returns at once: the event is validated here and written by the SDK's thread.
                setOnClickListener { tributary.track("Button Tapped", mapOf("count" to ++tapped)) }
            },
        )
        column.addView(Button(this).apply { text = "Flush"; setOnClickListener { tributary.flush() } })
        setContentView(column)
        tributary.screen("Main")
    }
}
