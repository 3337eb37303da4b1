package dev.tributary.android

import android.app.Activity
import android.app.Application
import android.app.job.JobInfo
import android.app.job.JobParameters
import android.app.job.JobScheduler
import android.app.job.JobService
import android.content.ComponentName
import android.content.Context
import android.content.pm.PackageManager
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.os.Build
import android.os.Bundle
import android.telephony.TelephonyManager
import dev.tributary.AppContext
import dev.tributary.AppLifecycle
import dev.tributary.Connectivity
import dev.tributary.ContextSource
import dev.tributary.Options
import dev.tributary.Platform
import dev.tributary.Tributary
import dev.tributary.UploadScheduler
import java.io.File
import java.util.Locale
import java.util.TimeZone
import kotlin.concurrent.thread

/**
 * The Android entry point: `TributaryAndroid.setup(context, writeKey, endpoint)` from
 * Java, or `Tributary.setup(context, writeKey, endpoint) { … }` from Kotlin. Call it
 * once, in `Application.onCreate`.
 *
 * It registers a `ConnectivityManager.NetworkCallback` (a network counts only once
 * `NET_CAPABILITY_VALIDATED` holds, so a captive portal is not online), the activity
 * lifecycle callbacks (sessions, a flush and a JobScheduler upload when the app goes to
 * the background, optional Segment lifecycle events), and collects the context from
 * `Build`, `PackageManager`, the locale, the time zone, the screen and the network.
 * The queue lives in `filesDir/tributary`.
 *
 * The manifest needs `INTERNET`, `ACCESS_NETWORK_STATE` and the upload job:
 * `<service android:name="dev.tributary.android.TributaryUploadJob"
 * android:permission="android.permission.BIND_JOB_SERVICE" android:exported="false"/>`.
 */
object TributaryAndroid {
    /** Creates the process's client with the Android hooks; see the object's description. */
    @JvmStatic
    @JvmOverloads
    fun setup(context: Context, writeKey: String, endpoint: String, options: Options = Options()): Tributary {
        val app = context.applicationContext
        val platform = Platform(
            storageDir = File(app.filesDir, "tributary"),
            context = AndroidContextSource(app),
            connectivity = AndroidConnectivity(app),
            lifecycle = (app as? Application)?.let { AndroidLifecycle(it) },
            scheduler = JobSchedulerUploads(app),
        )
        return Tributary.setup(platform, writeKey, endpoint, options)
    }
}

/** `Tributary.setup(context, writeKey, endpoint) { flushAt = 10 }`: see [TributaryAndroid.setup]. */
fun Tributary.Companion.setup(
    context: Context,
    writeKey: String,
    endpoint: String,
    configure: Options.() -> Unit = {},
): Tributary = TributaryAndroid.setup(context, writeKey, endpoint, Options().apply(configure))

/**
 * Online while at least one network with `NET_CAPABILITY_INTERNET` is also
 * `NET_CAPABILITY_VALIDATED` (the system reached the internet through it).
 */
class AndroidConnectivity(context: Context) : Connectivity {
    private val manager = context.getSystemService(ConnectivityManager::class.java)
    private val validated = HashSet<Network>()
    private var callback: ConnectivityManager.NetworkCallback? = null

    override fun start(onChange: (online: Boolean) -> Unit) {
        val manager = manager ?: return
        val report = { network: Network, isValidated: Boolean ->
            val online = synchronized(validated) {
                if (isValidated) validated.add(network) else validated.remove(network)
                validated.isNotEmpty()
            }
            onChange(online)
        }
        val cb = object : ConnectivityManager.NetworkCallback() {
            override fun onCapabilitiesChanged(network: Network, capabilities: NetworkCapabilities) {
                report(network, capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED))
            }

            override fun onLost(network: Network) {
                report(network, false)
            }
        }
        try {
            // The state now: the callback reports changes (and, from API 26, the current networks).
            val active = manager.activeNetwork
            val caps = active?.let { manager.getNetworkCapabilities(it) }
            if (active != null && caps != null) {
                report(active, caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED))
            } else {
                onChange(false)
            }
            val request = NetworkRequest.Builder()
                .addCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
                .build()
            manager.registerNetworkCallback(request, cb)
            callback = cb
        } catch (e: RuntimeException) {
            // No ACCESS_NETWORK_STATE permission: stay "online" and let uploads find out.
            onChange(true)
        }
    }

    override fun stop() {
        val cb = callback ?: return
        callback = null
        try {
            manager?.unregisterNetworkCallback(cb)
        } catch (e: RuntimeException) {
            // Already unregistered.
        }
    }
}

/**
 * Counts started activities: the app is in the foreground from the first start to the
 * last stop (a configuration change, such as a rotation, is neither).
 */
class AndroidLifecycle(private val application: Application) : AppLifecycle {
    private var callbacks: Application.ActivityLifecycleCallbacks? = null

    override fun start(listener: AppLifecycle.Listener) {
        val cb = object : Application.ActivityLifecycleCallbacks {
            private var started = 0

            override fun onActivityStarted(activity: Activity) {
                started++
                if (started == 1 && !activity.isChangingConfigurations) listener.onForeground()
            }

            override fun onActivityStopped(activity: Activity) {
                started--
                if (started == 0 && !activity.isChangingConfigurations) listener.onBackground()
            }

            override fun onActivityCreated(activity: Activity, savedInstanceState: Bundle?) {}
            override fun onActivityResumed(activity: Activity) {}
            override fun onActivityPaused(activity: Activity) {}
            override fun onActivitySaveInstanceState(activity: Activity, outState: Bundle) {}
            override fun onActivityDestroyed(activity: Activity) {}
        }
        application.registerActivityLifecycleCallbacks(cb)
        callbacks = cb
    }

    override fun stop() {
        callbacks?.let { application.unregisterActivityLifecycleCallbacks(it) }
        callbacks = null
    }
}

/**
 * The default [UploadScheduler]: one JobScheduler job (id [jobId]) that needs any
 * network and runs [TributaryUploadJob], even if the process was killed meanwhile
 * (the system starts it again, and `Application.onCreate` runs setup).
 */
class JobSchedulerUploads @JvmOverloads constructor(
    private val context: Context,
    private val jobId: Int = DEFAULT_JOB_ID,
) : UploadScheduler {
    private val scheduler get() = context.getSystemService(JobScheduler::class.java)

    override fun schedule() {
        try {
            val job = JobInfo.Builder(jobId, ComponentName(context, TributaryUploadJob::class.java))
                .setRequiredNetworkType(JobInfo.NETWORK_TYPE_ANY)
                .setBackoffCriteria(30_000, JobInfo.BACKOFF_POLICY_EXPONENTIAL)
                .build()
            scheduler?.schedule(job)
        } catch (e: RuntimeException) {
            // The service is not in the manifest: uploads still happen while the app runs.
        }
    }

    override fun cancel() {
        try {
            scheduler?.cancel(jobId)
        } catch (e: RuntimeException) {
            // Nothing to cancel.
        }
    }

    companion object {
        /** The job id used unless one is given; change it if your app uses this id. */
        const val DEFAULT_JOB_ID = 0x7472_6962 // "trib"
    }
}

/** The job [JobSchedulerUploads] schedules: uploads the queue on a background thread. */
class TributaryUploadJob : JobService() {
    override fun onStartJob(params: JobParameters): Boolean {
        val tributary = Tributary.shared ?: return false
        thread(name = "tributary-job") {
            val done = try {
                tributary.runScheduledUpload(60_000)
            } catch (e: Exception) {
                false
            }
            jobFinished(params, !done)
        }
        return true
    }

    /** The system stopped the job (the network went away): run it again later. */
    override fun onStopJob(params: JobParameters): Boolean = true
}

// versionCode is deprecated from API 28 (longVersionCode), which minSdk 23 cannot call.
@Suppress("DEPRECATION")
private fun versionCode(info: android.content.pm.PackageInfo): String = info.versionCode.toString()

/**
 * The automatic context: `Build`, the app's label and version from `PackageManager`,
 * the default locale and time zone, the screen in pixels and the network type.
 */
class AndroidContextSource(private val context: Context) : ContextSource {
    override fun collect(): AppContext {
        val pm = context.packageManager
        val info = try {
            pm.getPackageInfo(context.packageName, 0)
        } catch (e: PackageManager.NameNotFoundException) {
            null
        }
        val metrics = context.resources.displayMetrics
        val connectivity = context.getSystemService(ConnectivityManager::class.java)
        val caps = try {
            connectivity?.activeNetwork?.let { connectivity.getNetworkCapabilities(it) }
        } catch (e: RuntimeException) {
            null
        }
        val carrier = try {
            context.getSystemService(TelephonyManager::class.java)?.networkOperatorName?.ifEmpty { null }
        } catch (e: RuntimeException) {
            null
        }
        return AppContext(
            appName = context.applicationInfo.loadLabel(pm).toString(),
            appVersion = info?.versionName,
            appBuild = info?.let { versionCode(it) },
            appNamespace = context.packageName,
            deviceManufacturer = Build.MANUFACTURER,
            deviceModel = Build.MODEL,
            deviceType = "android",
            osName = "Android",
            osVersion = Build.VERSION.RELEASE,
            locale = Locale.getDefault().toLanguageTag(),
            timezone = TimeZone.getDefault().id,
            networkWifi = caps?.hasTransport(NetworkCapabilities.TRANSPORT_WIFI),
            networkCellular = caps?.hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR),
            networkCarrier = carrier,
            screenWidth = metrics.widthPixels,
            screenHeight = metrics.heightPixels,
            screenDensity = metrics.density.toDouble(),
        )
    }
}
