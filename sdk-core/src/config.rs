//! Client configuration and its validation.

use crate::TributaryError;

/// How a [`crate::Client`] records and uploads. Durations are in milliseconds
/// and sizes in bytes, so the record maps to every platform without surprises.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Config {
    /// Base URL of the collector, e.g. `https://ingest.example.com`. Batches go to `{endpoint}/v1/batch`.
    pub endpoint: String,
    /// The source's write key, sent as the HTTP Basic user name.
    pub write_key: String,
    /// Directory that holds the queue database. One client per directory.
    pub storage_dir: String,
    /// Upload once this many events are queued.
    #[uniffi(default = 20)]
    pub flush_at: u32,
    /// Upload at least this often while events are queued.
    #[uniffi(default = 30000)]
    pub flush_interval_ms: u64,
    /// Most events in one batch.
    #[uniffi(default = 500)]
    pub max_batch_events: u32,
    /// Most bytes in one batch, before gzip.
    #[uniffi(default = 500000)]
    pub max_batch_bytes: u64,
    /// Most bytes in one serialized event; larger events are refused by `track`.
    #[uniffi(default = 32000)]
    pub max_event_bytes: u64,
    /// Most bytes queued on disk; past it the oldest events are evicted, counted.
    #[uniffi(default = 20000000)]
    pub max_queue_bytes: u64,
    /// Events older than this are evicted, counted. At most [`Config::MAX_DURATION_MS`]
    /// (about 100 years), which in practice means "never".
    #[uniffi(default = 2592000000)]
    pub max_event_age_ms: u64,
    /// First retry delay; doubles per failed attempt, with full jitter.
    #[uniffi(default = 1000)]
    pub retry_base_delay_ms: u64,
    /// Cap on the retry delay.
    #[uniffi(default = 600000)]
    pub retry_max_delay_ms: u64,
    /// TCP and TLS connect timeout.
    #[uniffi(default = 10000)]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, including the response body.
    #[uniffi(default = 30000)]
    pub request_timeout_ms: u64,
    /// Most bytes of recorded events held in memory before they are on disk
    /// (the writer's queue). A recording call that would exceed it drops its
    /// event, counted in `Stats::dropped_backpressure`, instead of blocking.
    #[uniffi(default = 4000000)]
    pub max_buffer_bytes: u64,
    /// A session ends once the app has been in the background this long
    /// (see `Client::app_backgrounded`); 30 minutes by default, as Amplitude
    /// and PostHog do.
    #[uniffi(default = 1800000)]
    pub session_timeout_ms: u64,
    /// Reported in `context.library.name`, e.g. `tributary-kotlin`.
    #[uniffi(default = "tributary-rust")]
    pub library_name: String,
    /// Reported in `context.library.version`.
    #[uniffi(default = "0.1.0")]
    pub library_version: String,
}

impl Config {
    /// The largest accepted duration, in milliseconds: about 100 years. Durations
    /// are added to wall-clock milliseconds as `i64`; a larger value would
    /// overflow (a `ULong.MAX_VALUE` meant as "never" would evict everything).
    pub const MAX_DURATION_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

    /// The largest accepted size, in bytes (sizes are stored as SQLite `i64`).
    pub const MAX_BYTES: u64 = i64::MAX as u64;

    /// A configuration with every default from the documentation.
    pub fn new(endpoint: String, write_key: String, storage_dir: String) -> Self {
        Self {
            endpoint,
            write_key,
            storage_dir,
            flush_at: 20,
            flush_interval_ms: 30_000,
            max_batch_events: 500,
            max_batch_bytes: 500_000,
            max_event_bytes: 32_000,
            max_queue_bytes: 20_000_000,
            max_event_age_ms: 30 * 24 * 3600 * 1000,
            retry_base_delay_ms: 1_000,
            retry_max_delay_ms: 600_000,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_buffer_bytes: 4_000_000,
            session_timeout_ms: 30 * 60 * 1000,
            library_name: "tributary-rust".into(),
            library_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Checks every field, naming the first one that cannot work.
    pub fn validate(&self) -> Result<(), TributaryError> {
        let bad = |field: &str, reason: String| {
            Err(TributaryError::InvalidConfig {
                field: field.into(),
                reason,
            })
        };
        for (field, value) in [
            ("flush_interval_ms", self.flush_interval_ms),
            ("max_event_age_ms", self.max_event_age_ms),
            ("retry_base_delay_ms", self.retry_base_delay_ms),
            ("retry_max_delay_ms", self.retry_max_delay_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("session_timeout_ms", self.session_timeout_ms),
        ] {
            if value > Self::MAX_DURATION_MS {
                return bad(
                    field,
                    format!(
                        "{value} ms is more than the maximum of {} ms (about 100 years); use that to mean \"never\"",
                        Self::MAX_DURATION_MS
                    ),
                );
            }
        }
        for (field, value) in [
            ("max_batch_bytes", self.max_batch_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("max_queue_bytes", self.max_queue_bytes),
            ("max_buffer_bytes", self.max_buffer_bytes),
        ] {
            if value > Self::MAX_BYTES {
                return bad(
                    field,
                    format!(
                        "{value} is more than the maximum of {} bytes",
                        Self::MAX_BYTES
                    ),
                );
            }
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return bad(
                "endpoint",
                format!("`{}` must be an http:// or https:// URL", self.endpoint),
            );
        }
        if self.write_key.trim().is_empty() {
            return bad(
                "write_key",
                "must not be empty; copy it from your source settings".into(),
            );
        }
        if self.storage_dir.trim().is_empty() {
            return bad("storage_dir", "must name a writable directory".into());
        }
        if self.flush_at == 0 {
            return bad("flush_at", "must be at least 1".into());
        }
        if self.flush_interval_ms == 0 {
            return bad("flush_interval_ms", "must be at least 1 ms".into());
        }
        if self.max_batch_events == 0 {
            return bad("max_batch_events", "must be at least 1".into());
        }
        if self.max_event_bytes < 256 {
            return bad("max_event_bytes", "must be at least 256 bytes".into());
        }
        if self.max_batch_bytes < self.max_event_bytes {
            return bad(
                "max_batch_bytes",
                format!(
                    "{} is smaller than max_event_bytes ({}); a batch must fit one event",
                    self.max_batch_bytes, self.max_event_bytes
                ),
            );
        }
        if self.max_queue_bytes < self.max_batch_bytes {
            return bad(
                "max_queue_bytes",
                format!(
                    "{} is smaller than max_batch_bytes ({})",
                    self.max_queue_bytes, self.max_batch_bytes
                ),
            );
        }
        if self.max_buffer_bytes < self.max_event_bytes {
            return bad(
                "max_buffer_bytes",
                format!(
                    "{} is smaller than max_event_bytes ({}); the buffer must hold one event",
                    self.max_buffer_bytes, self.max_event_bytes
                ),
            );
        }
        if self.max_event_age_ms == 0 {
            return bad("max_event_age_ms", "must be at least 1 ms".into());
        }
        if self.retry_base_delay_ms == 0 {
            return bad("retry_base_delay_ms", "must be at least 1 ms".into());
        }
        if self.retry_max_delay_ms < self.retry_base_delay_ms {
            return bad(
                "retry_max_delay_ms",
                format!(
                    "{} is smaller than retry_base_delay_ms ({})",
                    self.retry_max_delay_ms, self.retry_base_delay_ms
                ),
            );
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms", "must be at least 1 ms".into());
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be at least 1 ms".into());
        }
        if self.session_timeout_ms == 0 {
            return bad("session_timeout_ms", "must be at least 1 ms".into());
        }
        if self.library_name.trim().is_empty() {
            return bad("library_name", "must not be empty".into());
        }
        Ok(())
    }
}
