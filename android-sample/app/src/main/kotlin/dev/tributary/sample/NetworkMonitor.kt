package dev.tributary.sample

import android.content.Context
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest

/**
 * Reports whether the app may upload: the device has a network with internet
 * access (from `ConnectivityManager.registerNetworkCallback`) and the user has
 * not pressed the sample's "go offline" button. [onChange] receives every
 * change; the callbacks arrive on a ConnectivityManager thread, which is fine
 * because `setNetworkAvailable` returns at once.
 */
class NetworkMonitor(context: Context, private val onChange: (Boolean) -> Unit) {
    private val connectivity = context.getSystemService(Context.CONNECTIVITY_SERVICE) as ConnectivityManager
    private val lock = Any()
    private val networks = HashSet<Network>()
    private var forcedOffline = false
    private var lastReported: Boolean? = null

    private val callback = object : ConnectivityManager.NetworkCallback() {
        override fun onAvailable(network: Network) {
            synchronized(lock) { networks.add(network) }
            report()
        }

        override fun onLost(network: Network) {
            synchronized(lock) { networks.remove(network) }
            report()
        }
    }

    /** True when uploads may run. */
    val isOnline: Boolean get() = synchronized(lock) { !forcedOffline && networks.isNotEmpty() }

    /** True while the "go offline" switch is on. */
    val isForcedOffline: Boolean get() = synchronized(lock) { forcedOffline }

    /** Starts listening; reports the current state at once. */
    fun start() {
        val active = connectivity.activeNetwork
        val hasInternet = active != null &&
            connectivity.getNetworkCapabilities(active)
                ?.hasCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET) == true
        if (hasInternet) synchronized(lock) { networks.add(active) }
        val request = NetworkRequest.Builder()
            .addCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
            .build()
        connectivity.registerNetworkCallback(request, callback)
        report()
    }

    /** The sample's "go offline" button: events keep being recorded, uploads pause. */
    fun setForcedOffline(offline: Boolean) {
        synchronized(lock) { forcedOffline = offline }
        report()
    }

    /** Stops listening. */
    fun stop() {
        connectivity.unregisterNetworkCallback(callback)
    }

    private fun report() {
        val online: Boolean
        synchronized(lock) {
            online = !forcedOffline && networks.isNotEmpty()
            if (lastReported == online) return
            lastReported = online
        }
        onChange(online)
    }
}
