package dev.tributary.sample

import android.app.Application
import android.content.Context
import dev.tributary.LogLevel
import dev.tributary.Logger
import dev.tributary.Tributary
import dev.tributary.android.setup

/**
 * All an app writes: one setup call. The library registers the network callback, the
 * activity lifecycle (sessions, a flush and a JobScheduler upload in the background,
 * Segment's lifecycle events) and collects the device context itself.
 */
class SampleApp : Application() {
    lateinit var tributary: Tributary
        private set

    override fun onCreate() {
        super.onCreate()
        tributary = Tributary.setup(this, SampleConfig.WRITE_KEY, SampleConfig.ENDPOINT) {
            trackLifecycleEvents = true
            logger = Logger.platform(LogLevel.DEBUG)
        }
    }

    companion object {
        /** The process's SampleApp, from any Context. */
        fun of(context: Context): SampleApp = context.applicationContext as SampleApp
    }
}
