package dev.tributary.sample

import android.app.Activity
import android.app.Application
import android.content.Context
import android.os.Build
import android.os.Bundle
import android.util.Log
import dev.tributary.DeviceContext
import dev.tributary.LogLevel
import dev.tributary.Logger
import dev.tributary.Tributary
import java.io.File
import java.util.Locale
import java.util.TimeZone

/**
 * Creates the one Tributary client of the process, keeps its network state in
 * sync with the system, and asks for an upload whenever the app goes to the
 * background (the last started activity stops).
 */
class SampleApp : Application() {
    /** The app's client; ready once [onCreate] has run. */
    lateinit var tributary: Tributary
        private set

    /** The system's connectivity, and the sample's "go offline" switch on top. */
    lateinit var network: NetworkMonitor
        private set

    override fun onCreate() {
        super.onCreate()
        // The queue lives in the app's private files; the constructor opens its SQLite
        // file once (a few ms). Every later recording call returns without I/O.
        tributary = Tributary(
            endpoint = SampleConfig.ENDPOINT,
            writeKey = SampleConfig.WRITE_KEY,
            storageDir = File(filesDir, "tributary"),
            logger = Logger.platform(LogLevel.DEBUG),
        )
        tributary.setContext(deviceContext(this))
        network = NetworkMonitor(this) { online -> tributary.setNetworkAvailable(online) }
        network.start()
        registerActivityLifecycleCallbacks(FlushOnBackground { tributary.flush() })
        tributary.track("Application Opened", mapOf("cold_start" to true))
    }

    companion object {
        /** The process's SampleApp, from any Context. */
        fun of(context: Context): SampleApp = context.applicationContext as SampleApp
    }
}

/**
 * Counts started activities; when the count drops to zero the app is in the
 * background, so [onBackground] runs (a non-blocking flush: the upload happens on
 * the SDK's own thread, and anything not sent stays on disk for next time).
 */
class FlushOnBackground(private val onBackground: () -> Unit) : Application.ActivityLifecycleCallbacks {
    private var started = 0

    override fun onActivityStarted(activity: Activity) {
        started++
    }

    override fun onActivityStopped(activity: Activity) {
        started--
        // isChangingConfigurations: a rotation stops and restarts the activity; not a background.
        if (started == 0 && !activity.isChangingConfigurations) {
            onBackground()
        }
    }

    override fun onActivityCreated(activity: Activity, savedInstanceState: Bundle?) {}
    override fun onActivityResumed(activity: Activity) {}
    override fun onActivityPaused(activity: Activity) {}
    override fun onActivitySaveInstanceState(activity: Activity, outState: Bundle) {}
    override fun onActivityDestroyed(activity: Activity) {}
}

/** The app and device details copied into every event's `context`. */
fun deviceContext(context: Context): DeviceContext {
    val info = try {
        context.packageManager.getPackageInfo(context.packageName, 0)
    } catch (e: Exception) {
        Log.w("TributarySample", "package info unavailable", e)
        null
    }
    // versionCode is deprecated from API 28 (longVersionCode), which minSdk 23 cannot call.
    @Suppress("DEPRECATION")
    val build = info?.versionCode?.toString()
    val metrics = context.resources.displayMetrics
    val locale = Locale.getDefault()
    return DeviceContext(
        appName = context.applicationInfo.loadLabel(context.packageManager).toString(),
        appVersion = info?.versionName,
        appBuild = build,
        appNamespace = context.packageName,
        deviceManufacturer = Build.MANUFACTURER,
        deviceModel = Build.MODEL,
        deviceType = "android",
        osName = "Android",
        osVersion = Build.VERSION.RELEASE,
        locale = locale.language + (if (locale.country.isNotEmpty()) "-" + locale.country else ""),
        timezone = TimeZone.getDefault().id,
        screenWidth = metrics.widthPixels.toUInt(),
        screenHeight = metrics.heightPixels.toUInt(),
        screenDensity = metrics.density.toDouble(),
    )
}
