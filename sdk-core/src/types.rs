//! Records and enums returned by or passed to the client.

/// Device and app details the platform layer supplies; every field is
/// optional. They are copied into each event's `context` at record time.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct DeviceContext {
    /// `context.app.name`.
    #[uniffi(default = None)]
    pub app_name: Option<String>,
    /// `context.app.version`.
    #[uniffi(default = None)]
    pub app_version: Option<String>,
    /// `context.app.build`.
    #[uniffi(default = None)]
    pub app_build: Option<String>,
    /// `context.app.namespace` (package name or bundle id).
    #[uniffi(default = None)]
    pub app_namespace: Option<String>,
    /// `context.device.manufacturer`.
    #[uniffi(default = None)]
    pub device_manufacturer: Option<String>,
    /// `context.device.model`.
    #[uniffi(default = None)]
    pub device_model: Option<String>,
    /// `context.device.type`, e.g. `android` or `ios`.
    #[uniffi(default = None)]
    pub device_type: Option<String>,
    /// `context.os.name`.
    #[uniffi(default = None)]
    pub os_name: Option<String>,
    /// `context.os.version`.
    #[uniffi(default = None)]
    pub os_version: Option<String>,
    /// `context.locale`, e.g. `en-US`.
    #[uniffi(default = None)]
    pub locale: Option<String>,
    /// `context.timezone`, an IANA name such as `Europe/Paris`.
    #[uniffi(default = None)]
    pub timezone: Option<String>,
    /// `context.network.wifi`.
    #[uniffi(default = None)]
    pub network_wifi: Option<bool>,
    /// `context.network.cellular`.
    #[uniffi(default = None)]
    pub network_cellular: Option<bool>,
    /// `context.network.carrier`.
    #[uniffi(default = None)]
    pub network_carrier: Option<String>,
    /// `context.screen.width` in points.
    #[uniffi(default = None)]
    pub screen_width: Option<u32>,
    /// `context.screen.height` in points.
    #[uniffi(default = None)]
    pub screen_height: Option<u32>,
    /// `context.screen.density`.
    #[uniffi(default = None)]
    pub screen_density: Option<f64>,
}

/// Per-call options of the `*_with_options` recording calls; every field is
/// optional, and `EventOptions::default()` changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct EventOptions {
    /// The event's `timestamp`, in ms since the Unix epoch, for an event that
    /// happened earlier than it is recorded. `None`: now.
    #[uniffi(default = None)]
    pub timestamp_ms: Option<i64>,
    /// A JSON object whose top-level keys replace those of the event's
    /// `context` (e.g. `{"ip":"0.0.0.0"}` or `{"page":{...}}`).
    #[uniffi(default = None)]
    pub context_json: Option<String>,
    /// A JSON object sent as the event's `integrations`
    /// (e.g. `{"All":false,"Mixpanel":true}`).
    #[uniffi(default = None)]
    pub integrations_json: Option<String>,
}

/// How `flush_blocking` or `shutdown` ended.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum FlushResult {
    /// Every event recorded before the call was acknowledged by the server.
    Delivered,
    /// The timeout elapsed first. The remaining events are durable on disk
    /// (the wait for durability ignores the timeout, up to 30 s of failing
    /// storage; then `Stats::last_error` says why).
    TimedOut {
        /// Events still queued.
        pending: u64,
    },
    /// The network is marked unavailable. The events are durable on disk.
    Offline {
        /// Events still queued.
        pending: u64,
    },
    /// The server refused the write key (401/403); uploads wait for a new key or a restart.
    Unauthorized {
        /// Events still queued.
        pending: u64,
    },
    /// Recording is disabled (opted out); nothing is queued.
    Disabled,
}

/// A snapshot of the client's queue and counters since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct Stats {
    /// Events on disk waiting for upload, including the batch in flight.
    pub queued_events: u64,
    /// Bytes of those events.
    pub queued_bytes: u64,
    /// Events in the current batch (persisted and being sent or retried), 0 if none.
    pub in_flight_events: u64,
    /// Idempotency key of the current batch, if any.
    pub in_flight_batch: Option<String>,
    /// Events acknowledged by the server.
    pub uploaded_events: u64,
    /// Events evicted because they were older than `max_event_age_ms`.
    pub dropped_age: u64,
    /// Events evicted because the queue exceeded `max_queue_bytes`.
    pub dropped_byte_cap: u64,
    /// Events the server rejected (400 per event or for the batch, 413 for one event).
    pub dropped_rejected: u64,
    /// Events refused by `track` because they exceeded `max_event_bytes`.
    pub dropped_too_large: u64,
    /// Events dropped because the writer's buffer was full (`max_buffer_bytes`).
    pub dropped_backpressure: u64,
    /// Upload attempts that failed and were scheduled again.
    pub retries: u64,
    /// The last upload or storage error, if any.
    pub last_error: Option<String>,
    /// Times the database was found corrupt, moved aside and recreated.
    pub database_resets: u64,
    /// Events lost when a corrupt database was replaced: those that could not
    /// be read back from it (the readable ones are copied to the new one).
    #[uniffi(default = 0)]
    pub dropped_corrupt: u64,
    /// Events recorded but never stored because the client shut down first:
    /// a recording call racing `shutdown`, or events the writer still held when
    /// the storage kept failing past the shutdown bound.
    #[uniffi(default = 0)]
    pub dropped_shutdown: u64,
    /// Events deleted from the queue (or refused) by opting out.
    #[uniffi(default = 0)]
    pub dropped_opt_out: u64,
    /// Events the recording calls accepted since the client was created: every
    /// call that built an event while recording was enabled, including those then
    /// dropped as too large or for backpressure. At any quiet moment
    /// `restored_events + recorded_events = uploaded_events + queued_events +
    /// buffered_events + every dropped_* counter`.
    #[uniffi(default = 0)]
    pub recorded_events: u64,
    /// Events found queued on disk when the client opened the database (left by
    /// an earlier run).
    #[uniffi(default = 0)]
    pub restored_events: u64,
    /// Events recorded but not yet committed to disk (in the writer's queue).
    #[uniffi(default = 0)]
    pub buffered_events: u64,
    /// Bytes of those events.
    #[uniffi(default = 0)]
    pub buffered_bytes: u64,
    /// Times a background thread panicked and was restarted (a bug: see `last_error`).
    #[uniffi(default = 0)]
    pub thread_restarts: u64,
}
